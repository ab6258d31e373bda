package store

import "time"

// What Postgres keeps for several controllers sharing it (issue 15,
// migration 0015; controller/cluster uses it). The embedded store serves
// one controller and keeps none of it: controller/cluster treats every
// lease and every timer tick as that controller's and keeps its identity
// in the data dir.

// MaxLeaseTTL bounds how far in the future a lease may expire. No
// controller writes a longer lease, so a row expiring later than the
// database's now() plus this (written by hand, or left by a database
// clock that jumped back) is taken by the next controller that asks,
// instead of stopping the lease's work until then.
const MaxLeaseTTL = time.Minute

// Lease is one row of the leases table.
type Lease struct {
	Name  string
	Owner string
	// Epoch grows by one each time the lease changes owner.
	Epoch int64
	// Acquired is when Owner took it; Expires when it lapses unless
	// renewed (the database's clock, both).
	Acquired, Expires time.Time
	// Live says whether Expires was still ahead of the database's clock
	// when it was read.
	Live bool
}

// SealedIdentity is the cluster's TLS identity as the store keeps it:
// the certificate (PEM) in clear, the private key (PEM) sealed by the
// controllers' secrets key, KeyID naming that key.
type SealedIdentity struct {
	CertPEM   []byte
	KeyID     string
	SealedKey []byte
	// Created is set by the store when the identity is first stored.
	Created time.Time
}

// Package cluster is what lets several controllers share one Postgres
// (issue 15): each controller process has an instance id; committed
// changes reach every controller through the store's ChangeFeed; singleton
// work (cloud MQTT events, CouchDB sink delivery, cloud timer ticks) is
// claimed through the store so each event and each result is handled once
// and is taken over when its owner dies.
//
// The embedded store is single-controller: with it every claim is this
// controller's and the change feed is in process.
//
// It must never import the REST layer (controller/api).
package cluster

// Package cron parses timer schedules and runs timers: the one definition
// of when a Wisp timer trigger fires, shared by the controller (cloud
// timers) and the agents (edge-local timers).
//
// # Schedules
//
// Parse reads a cron expression of five fields, minute hour day-of-month
// month day-of-week, always in UTC. A field is "*", a number, a range
// "a-b", a list "a,b-c", or any of those with a step "/n" ("*/15",
// "0-30/10"). Months are 1-12 or JAN-DEC, days of the week 0-7 (0 and 7
// are Sunday) or SUN-SAT; names are case-insensitive, and allowed as
// single values and range ends. When both day fields are restricted a
// day matches either; when one starts with "*" a day must match both
// (Vixie cron's rule). Macros ("@hourly"), seconds and
// years are not supported; an expression that can never fire ("0 0 30 2
// *") is refused.
//
// Every makes an interval schedule (a Go duration, MinEvery to MaxEvery,
// whole milliseconds). Its ticks are aligned on the Unix epoch (every 30s
// fires at :00 and :30 of each minute), so every process computes the
// same tick times, before and after a restart.
//
// # Missed ticks and overlaps (Set)
//
// A Set runs timers. After downtime (the process stopped, the machine
// asleep, the wall clock jumped forward) it never catches up: a tick whose
// time passed more than Grace ago is skipped and counted as missed, and
// the next run is the schedule's next time after now. A tick is run at
// most once, late by at most Grace. When the wall clock goes back, the
// next tick is planned again from the new time. When the previous run of
// the same timer is still running at a tick, that tick is skipped and
// counted as an overlap.
//
// This package imports only the standard library: it must never import
// controller or agent code.
package cron

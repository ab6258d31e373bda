// Package scheduler decides which agent runs an invocation. For now it holds
// only the parser of APP scripts (FunLess's tag-based scheduling language),
// which the REST API uses to validate uploads and the scheduler will use to
// pick agents.
//
// It must never talk to the store or to agents itself: it works on values
// handed to it, so that it can be tested without any service.
package scheduler

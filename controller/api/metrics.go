package api

import (
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the API's Prometheus instruments.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// newMetrics registers the Go runtime collector and the HTTP instruments on reg.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wisp_http_requests_total",
			Help: "HTTP requests answered by the controller API, by method, route pattern and status code.",
		}, []string{"method", "route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "wisp_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request of the controller API, by method, route pattern and status code.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16), // 0.5 ms .. ~16 s
		}, []string{"method", "route", "status"}),
	}
	for _, c := range []prometheus.Collector{collectors.NewGoCollector(), m.requests, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// middleware records every request. It runs the error handler itself so
// that the status it records is the one sent.
func (m *metrics) middleware(routes map[string]bool, onError fiber.ErrorHandler) fiber.Handler {
	return func(c *fiber.Ctx) error {
		start := time.Now()
		if err := c.Next(); err != nil {
			if herr := onError(c, err); herr != nil {
				return herr
			}
		}
		route := c.Route().Path
		if !routes[c.Route().Method+" "+route] {
			route = "unmatched" // keeps unknown paths from creating label values
		}
		status := strconv.Itoa(c.Response().StatusCode())
		m.requests.WithLabelValues(c.Method(), route, status).Inc()
		m.duration.WithLabelValues(c.Method(), route, status).Observe(time.Since(start).Seconds())
		return nil
	}
}

package telemetry

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func labelPairs(m prometheus.Metric) map[string]string {
	var pb dto.Metric
	if err := m.Write(&pb); err != nil {
		return nil
	}
	out := map[string]string{}
	for _, lp := range pb.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}

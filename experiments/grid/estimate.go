package grid

import "time"

// Estimate predicts the wall time left of a run: for each kind of unit, the
// units left times the mean wall time of the units of that kind finished so
// far (a group's first cut carries its loading, so the mean includes a
// group's share of it), all divided by the jobs running at once. It returns
// 0 while some kind with units left has none finished.
type Estimate struct {
	jobs  int
	left  map[string]int
	secs  map[string]float64
	count map[string]int
}

// NewEstimate starts an estimate for the given units run jobs at a time.
func NewEstimate(units []*Unit, jobs int) *Estimate {
	e := &Estimate{jobs: max(1, jobs), left: map[string]int{}, secs: map[string]float64{}, count: map[string]int{}}
	for _, u := range units {
		e.left[u.Kind]++
	}
	return e
}

// Finished counts a unit of kind as done in seconds of wall time.
func (e *Estimate) Finished(kind string, seconds float64) {
	e.left[kind]--
	e.secs[kind] += seconds
	e.count[kind]++
}

// Failed counts a unit of kind as no longer left, without a time.
func (e *Estimate) Failed(kind string) { e.left[kind]-- }

// Left is the estimated wall time left (0: not known yet, or nothing left).
func (e *Estimate) Left() time.Duration {
	total := 0.0
	for k, n := range e.left {
		if n <= 0 {
			continue
		}
		if e.count[k] == 0 {
			return 0
		}
		total += float64(n) * e.secs[k] / float64(e.count[k])
	}
	return time.Duration(total / float64(e.jobs) * float64(time.Second))
}

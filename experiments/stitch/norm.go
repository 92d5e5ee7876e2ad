package stitch

import (
	"fmt"
	"math"
	"strings"

	"modelstitch/experiments/models"
	"modelstitch/experiments/results"
)

// Where an input normalisation came from (results.Norm.Source).
const (
	// NormGiven: set by the caller (Runner.BottomNorm/TopNorm).
	NormGiven = "given"
	// NormCheckpoint: the checkpoint's own metadata.
	NormCheckpoint = "checkpoint"
	// NormData: the data set's known statistics.
	NormData = "data set"
	// NormGuessed: a folder of images, whose statistics are not known, with
	// ImageNet's as a guess.
	NormGuessed = "guessed (ImageNet's, for image folders)"
)

// resolveNorm returns a model's input normalisation and where it came from:
// given (when not nil) wins, then the checkpoint's metadata, then the data
// set's known statistics (a guess for image folders).
func (r *Runner) resolveNorm(m *models.Model, given *results.Norm) results.Norm {
	c := r.Test.C
	switch {
	case given != nil && len(given.Mean) == c && len(given.Std) == c:
		return results.Norm{Mean: given.Mean, Std: given.Std, Source: NormGiven}
	case len(m.Meta.Mean) == c && len(m.Meta.Std) == c:
		return results.Norm{Mean: m.Meta.Mean, Std: m.Meta.Std, Source: NormCheckpoint}
	case strings.HasPrefix(r.Config.Data, "folder:"):
		return results.Norm{Mean: r.Test.Mean, Std: r.Test.Std, Source: NormGuessed}
	}
	return results.Norm{Mean: r.Test.Mean, Std: r.Test.Std, Source: NormData}
}

// Norms returns the bottom's and the top's input normalisations as the run
// uses them.
func (r *Runner) Norms() (bottom, top results.Norm) {
	return r.resolveNorm(r.Bottom, r.BottomNorm), r.resolveNorm(r.Top, r.TopNorm)
}

// norms returns Norms as the loaders take them.
func (r *Runner) norms() (bottom, top [2][]float64) {
	b, t := r.Norms()
	return [2][]float64{b.Mean, b.Std}, [2][]float64{t.Mean, t.Std}
}

// checkNorm refuses a given normalisation (nil: none) that does not have one
// mean and one positive, finite standard deviation per channel.
func checkNorm(n *results.Norm, channels int) error {
	if n == nil {
		return nil
	}
	if len(n.Mean) != channels || len(n.Std) != channels {
		return fmt.Errorf("has %d means and %d standard deviations for %d channels", len(n.Mean), len(n.Std), channels)
	}
	for i := range channels {
		if math.IsNaN(n.Mean[i]) || math.IsInf(n.Mean[i], 0) || !(n.Std[i] > 0) || math.IsInf(n.Std[i], 0) {
			return fmt.Errorf("channel %d: mean %g, std %g: need a finite mean and a positive, finite std", i, n.Mean[i], n.Std[i])
		}
	}
	return nil
}

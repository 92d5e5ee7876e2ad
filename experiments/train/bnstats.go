package train

import (
	"fmt"

	"modelstitch/experiments/invalid"
	"modelstitch/experiments/progress"
	"modelstitch/torch"
	"modelstitch/torch/nn"
	"modelstitch/torch/vision/data"
)

// Batch-norm statistics of an untrained network (Config.BNStats).
const (
	// BNStatsInitial keeps PyTorch's initial running statistics (mean 0,
	// variance 1): in eval mode the batch norms then normalise nothing.
	BNStatsInitial = "initial"
	// BNStatsData recomputes the running statistics on the training images
	// (RecomputeBNStats), as an untrained network evaluated with batch
	// statistics, or after any training, would have them.
	BNStatsData = "data"
)

// checkBNStats validates Config.BNStats for a run of epochs.
func checkBNStats(v string, epochs int) error {
	switch v {
	case "", BNStatsInitial:
		return nil
	case BNStatsData:
		if epochs != 0 {
			return invalid.Errorf("bn stats", "%q applies to the untrained network (epochs 0); training sets the statistics itself", v)
		}
		return nil
	}
	return invalid.Errorf("bn stats", "must be %q or %q, got %q", BNStatsInitial, BNStatsData, v)
}

// BatchNorms returns every batch norm in m, depth first.
func BatchNorms(m nn.Module) []*nn.BatchNorm {
	var out []*nn.BatchNorm
	if bn, ok := m.(*nn.BatchNorm); ok {
		out = append(out, bn)
	}
	for _, c := range nn.Children(m) {
		out = append(out, BatchNorms(c.Module)...)
	}
	return out
}

// RecomputeBNStats replaces the running statistics of every batch norm in
// net by those of the loader's images: the statistics are reset, then one
// pass runs in training mode without gradients, with each batch weighted
// equally (PyTorch's momentum=None cumulative average). The weights do not
// change; net is left in eval mode with its batch norms' momentum restored.
func RecomputeBNStats(net nn.Module, loader *data.Loader, report progress.Func, stage string) error {
	bns := BatchNorms(net)
	if len(bns) == 0 {
		return nil
	}
	momentum := make([]float64, len(bns))
	for i, bn := range bns {
		momentum[i] = bn.Momentum
	}
	defer func() {
		for i, bn := range bns {
			bn.Momentum = momentum[i]
		}
		nn.Eval(net)
	}()
	err := torch.NoGrad(func() error {
		for _, bn := range bns {
			if err := torch.FirstError(bn.RunningMean, bn.RunningVar); err != nil {
				return err
			}
			if err := bn.RunningMean.Fill(0); err != nil {
				return err
			}
			if err := bn.RunningVar.Fill(1); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("batch-norm statistics: %w", err)
	}
	nn.Train(net)
	bar := report.Start(stage, "images", loader.Dataset().N)
	k := 0
	for b, err := range loader.Batches(0) {
		if err != nil {
			return fmt.Errorf("batch-norm statistics: %w", err)
		}
		k++
		for _, bn := range bns {
			bn.Momentum = 1 / float64(k) // running = ((k−1)·running + batch)/k
		}
		n := b.Len()
		ferr := torch.NoGrad(func() error { return net.Forward(b.X).Err() })
		b.Close()
		if ferr != nil {
			return fmt.Errorf("batch-norm statistics: %w", ferr)
		}
		bar.Add(n)
	}
	bar.End()
	if k == 0 {
		return fmt.Errorf("batch-norm statistics: no images")
	}
	return nil
}

package stitch

import (
	"context"
	"errors"
	"fmt"

	"modelstitch/experiments/budget"
	"modelstitch/experiments/evaluate"
	"modelstitch/experiments/invalid"
	"modelstitch/experiments/loop"
	"modelstitch/experiments/progress"
	"modelstitch/experiments/results"
	"modelstitch/torch"
	"modelstitch/torch/nn"
	"modelstitch/torch/vision/data"
	"modelstitch/torch/vision/datasets"
)

// fastSupported says why the shared path cannot serve cfg ("" when it
// can): batch statistics in the frozen halves make their activations depend
// on the batch.
func fastSupported(cfg Config) string {
	if cfg.FrozenBN != "eval" {
		return "frozen bn " + cfg.FrozenBN + " (batch statistics) needs the plain path"
	}
	return ""
}

// runAll is Run's shared path: it computes what runOneByOne does, with the
// same rows up to float rounding, but shares work between the cuts of the
// pair (see Speed for the switches):
//   - the bottom runs once over the fitting, least-squares and test images,
//     carried from cut to cut by the blocks in between (ActivationCache), so
//     every epoch, the direct match and the final score read the same
//     activations instead of recomputing them (NoCache: recomputed per
//     batch; MemoryBudget: caches that do not fit are recomputed); with
//     FitAugment the fitting images change every epoch, so the bottom runs
//     on each fitting batch instead (the other caches stay);
//   - the top's own activations for the least-squares targets and CKA are
//     carried cut to cut the same way, and its accuracy takes one pass;
//   - the bottom's own accuracy is read from the test cache at the last cut
//     to do, where the rest of the bottom is shortest; the rows written
//     before then are completed in the store (RowStore.Update);
//   - the frozen halves' batch norms are folded into their convolutions
//     (NoFoldBN keeps them), and passes without gradients run in oneDNN's
//     layout on the CPU (NoMkldnn keeps NCHW; Frozen.UseMkldnn);
//   - evaluation runs in batches of EvalBatchSize;
//   - evaluation, cache filling, the least-squares products and the top's
//     half of every fitting batch are shared between Workers single-threaded
//     goroutines (torch.Workers; docs/speed.md).
//
// Batch statistics (FrozenBN "train") make the frozen halves' activations
// depend on the batch; runAll then takes the plain path.
//
// Each row's PeakRSSMiB is the process's peak resident memory so far
// (budget.PeakResidentBytes).
func (r *Runner) runAll(ctx context.Context) ([]results.Row, error) {
	cfg := r.Config
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := cfg.Speed.Validate(); err != nil {
		return nil, err
	}
	if why := fastSupported(cfg); why != "" {
		cfg.Progress.Notef("%s", why)
		return r.runOneByOne(ctx)
	}
	cuts, bottomShapes, topShapes, err := r.prepare()
	if err != nil {
		return nil, err
	}
	s, err := r.newShared()
	if err != nil {
		return nil, err
	}
	defer s.close()
	s.cuts, s.bottomShapes, s.topShapes = cuts, bottomShapes, topShapes
	lsN := 0
	if s.lsSet != nil {
		lsN = s.lsSet.N
	}
	rowFor, err := r.rowMaker(s.fitSet.N, lsN)
	if err != nil {
		return nil, err
	}
	todo := r.todo(cuts, rowFor)
	if len(todo) == 0 {
		return s.allDone(rowFor)
	}
	if err := s.buildCaches(); err != nil {
		return nil, err
	}
	// The top's own accuracy in one pass over the test images.
	if s.topAcc, err = r.ownAccuracy(s.topF, s.topNorm, s.evalBatch, s.pool, "top model accuracy"); err != nil {
		return nil, fmt.Errorf("top model accuracy: %w", err)
	}
	// The bottom's own accuracy, from the test cache at the last cut to do:
	// the caches carry the bottom's activations there anyway, and the rest
	// of the bottom is shortest from there. The rows written before it is
	// known are completed then, before the last row is written, so a results
	// file holding a run's last row holds the accuracy in all of them.
	// With CompleteRows it is read at the first cut to do instead.
	s.accCut = todo[len(todo)-1]
	if r.CompleteRows {
		s.accCut = todo[0]
	}
	rows, err := r.eachCut(ctx, cuts, rowFor, nil, s.runCut)
	if err != nil {
		return rows, err
	}
	return rows, s.backfill(rows)
}

// shared is the shared path's state for one pair: the frozen halves, the
// data, and the caches that carry activations from cut to cut.
type shared struct {
	r                       *Runner
	bottomF, topF           *Frozen
	pool                    *torch.Workers
	evalBatch               int
	bottomNorm, topNorm     [2][]float64
	fitSet, valSet          *datasets.Dataset // valSet nil: no validation
	lsSet                   *datasets.Dataset // the least-squares images (nil: no least-squares start)
	fit                     *data.Loader      // the fitting batches' order and labels (and, with FitAugment, images)
	caches                  []*ActivationCache
	cs                      cutCaches
	cuts                    []string
	bottomShapes, topShapes map[string][]int64
	topAcc                  float64
	wantBottomAcc           bool     // the bottom's classes are the data's
	accCut                  string   // the cut at which the bottom's accuracy is read
	bottomAcc               *float64 // once read
}

// newShared freezes the halves for the shared path (eval mode and no
// gradients come from prepare; batch norms folded, oneDNN's layout) and
// chooses the data as the plain path does.
func (r *Runner) newShared() (_ *shared, err error) {
	cfg := r.Config
	s := &shared{r: r}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	fold := !cfg.Speed.NoFoldBN
	if s.bottomF, err = NewFrozen(r.Bottom.Net, fold); err != nil {
		return nil, fmt.Errorf("bottom model: %w", err)
	}
	if s.topF, err = NewFrozen(r.Top.Net, fold); err != nil {
		return nil, fmt.Errorf("top model: %w", err)
	}
	if fold && !cfg.Speed.NoMkldnn && cfg.Device.Type == torch.DeviceCPU {
		for _, f := range []*Frozen{s.bottomF, s.topF} {
			if err := f.UseMkldnn(); err != nil {
				cfg.Progress.Notef("plain layout: %v", err)
			}
		}
	}
	if s.fitSet, s.valSet, err = r.selectData(); err != nil {
		return nil, err
	}
	s.evalBatch = cfg.Speed.evalBatch(cfg.Device, cfg.BatchSize)
	s.pool = torch.NewWorkers(cfg.Speed.workerCount(cfg.Device, torch.NumThreads()))
	s.bottomNorm, s.topNorm = r.norms()
	if s.fit, err = r.fitLoader(s.fitSet, s.bottomNorm); err != nil {
		return nil, err
	}
	// The least-squares images are fitting images (lsIndex: which; nil: all),
	// so their bottom activations come from the fitting cache.
	if cfg.Init == InitLeastSquares {
		s.lsSet = s.fitSet
		if cfg.LSSamples > 0 && cfg.LSSamples < s.fitSet.N {
			if s.cs.lsIndex, err = s.fitSet.SubsetIndices(cfg.LSSamples, cfg.Seed); err != nil {
				return nil, invalid.Wrap("ls samples", err)
			}
			if s.lsSet, err = s.fitSet.Take(s.cs.lsIndex); err != nil {
				return nil, invalid.Wrap("ls samples", err)
			}
		}
	}
	// The bottom's own accuracy means something only when its classes are the data's.
	s.wantBottomAcc = r.Bottom.Net.HasClassifier() && r.Bottom.Meta.Classes == r.Test.Classes
	return s, nil
}

// close frees the caches, the workers and the frozen halves.
func (s *shared) close() {
	for _, c := range s.caches {
		c.Free()
	}
	s.pool.Close()
	for _, f := range []*Frozen{s.topF, s.bottomF} {
		if f != nil {
			f.Close()
		}
	}
}

// allDone returns the stored rows when every cut is done, reading the
// bottom's accuracy in one pass when a row lacks it (an interrupted run
// left it out: see runAll).
func (s *shared) allDone(rowFor func(string) results.Row) ([]results.Row, error) {
	r := s.r
	var rows []results.Row
	for _, cut := range s.cuts {
		done, _ := r.done(rowFor(cut))
		rows = append(rows, done)
		r.Config.Progress.Notef("cut %s: already in results, skipped", cut)
	}
	if s.wantBottomAcc && lacksBottomAcc(rows) {
		a, err := r.ownAccuracy(s.bottomF, s.bottomNorm, s.evalBatch, s.pool, "bottom model accuracy")
		if err != nil {
			return rows, fmt.Errorf("bottom model accuracy: %w", err)
		}
		if err := r.fillBottomAcc(rows, a); err != nil {
			return rows, err
		}
	}
	return rows, nil
}

// newCache makes a cache of net's activations of ds (normalised by norm),
// freed by close.
func (s *shared) newCache(net *Frozen, ds *datasets.Dataset, norm [2][]float64, o CacheOptions) (*ActivationCache, error) {
	l, err := data.NewLoader(ds, data.Config{BatchSize: s.evalBatch, Device: s.r.Config.Device, Mean: norm[0], Std: norm[1]})
	if err != nil {
		return nil, err
	}
	c, err := NewActivationCache(net, l, o)
	if err == nil {
		s.caches = append(s.caches, c)
	}
	return c, err
}

// buildCaches makes the caches, filled at the first cut to do, in the order
// of priority for the memory budget: fitting images (every epoch), test, the
// rest.
func (s *shared) buildCaches() error {
	cfg := s.r.Config
	mb := &MemoryBudget{Limit: cfg.Speed.MemoryBudget}
	copts := CacheOptions{Off: cfg.Speed.NoCache, Budget: mb, Batch: s.evalBatch, Workers: s.pool}
	if cfg.Speed.HalfCache {
		copts.DType = torch.Float16
	}
	var err error
	// Augmented fitting images are new every epoch: their activations cannot
	// be kept, and each batch runs the bottom on its own images (fitInputs).
	if !cfg.FitAugment || s.lsSet != nil { // the least-squares start reads un-augmented fitting images from it
		if s.cs.fit, err = s.newCache(s.bottomF, s.fitSet, s.bottomNorm, copts); err != nil {
			return err
		}
	}
	if s.cs.test, err = s.newCache(s.bottomF, s.r.Test, s.bottomNorm, copts); err != nil {
		return err
	}
	if s.valSet != nil {
		if s.cs.val, err = s.newCache(s.bottomF, s.valSet, s.bottomNorm, copts); err != nil {
			return err
		}
	}
	if s.lsSet != nil {
		if s.cs.lsTop, err = s.newCache(s.topF, s.lsSet, s.topNorm, copts); err != nil {
			return err
		}
	}
	if cfg.CKASamples > 0 {
		o := copts
		o.Limit = cfg.CKASamples
		if s.cs.ckaTop, err = s.newCache(s.topF, s.r.Test, s.topNorm, o); err != nil {
			return err
		}
	}
	return nil
}

// runCut stitches the i-th cut from the caches (eachCut's step): it moves
// the caches to the cut, reads the bottom's accuracy at accCut (completing
// the rows so far), and fits and scores the layer.
func (s *shared) runCut(i int, cut string, row *results.Row, rows []results.Row) error {
	r, cfg := s.r, s.r.Config
	tag := fmt.Sprintf("[%d/%d] %s", i+1, len(s.cuts), cut)
	bc := r.bottomCut(cut)
	if err := s.moveCaches(cut, bc, tag); err != nil {
		return fmt.Errorf("cut %s: %w", cut, err)
	}
	// The previous cut's fitting and evaluation buffers are free now but
	// kept by malloc (torch.TrainingHeap keeps up to 256 MiB per arena),
	// and this cut's are other sizes: give them back first. The default
	// run's peak RSS fell from 1,821–1,978 MiB to 1,707–1,780 MiB
	// (five runs each), at the same speed.
	torch.ReleaseMemory()
	if s.wantBottomAcc && cut == s.accCut {
		a, err := accuracyCached(func(h *torch.Tensor) *torch.Tensor { return s.bottomF.ForwardFrom(h, bc) }, s.cs.test, s.pool, cfg.Progress, tag+" bottom model accuracy")
		if err != nil {
			return fmt.Errorf("bottom model accuracy: %w", err)
		}
		s.bottomAcc = &a
		if err := r.fillBottomAcc(rows, a); err != nil {
			return err
		}
	}
	row.TopAcc, row.BottomAcc = s.topAcc, s.bottomAcc
	fitFrom := s.cs.fit // with FitAugment the fit runs the bottom on each batch
	if cfg.FitAugment {
		fitFrom = nil
	}
	if err := r.stitchCached(row, cut, s.bottomShapes[bc], s.topShapes[cut], s.topF, s.fit, fitInputs(fitFrom, s.bottomF, bc), s.cs, s.pool, tag); err != nil {
		return fmt.Errorf("cut %s: %w", cut, err)
	}
	row.PeakRSSMiB = float64(budget.PeakResidentBytes()) / (1 << 20)
	return nil
}

// moveCaches carries every cache to cut (the bottom's to its cut bc).
func (s *shared) moveCaches(cut, bc, tag string) error {
	bar := s.r.Config.Progress.Start(tag+" bottom and top activations", "caches", len(s.caches))
	for _, c := range s.caches {
		at := cut
		if c.net == s.bottomF {
			at = bc
		}
		if err := c.At(at); err != nil {
			return err
		}
		bar.Add(1)
	}
	bar.End()
	return nil
}

// backfill gives the bottom's accuracy, once read, to the rows done before
// this run that come after the last cut to do.
func (s *shared) backfill(rows []results.Row) error {
	if s.bottomAcc == nil {
		return nil
	}
	return s.r.fillBottomAcc(rows, *s.bottomAcc)
}

// ownAccuracy scores net on the test images in one pass (a cache that keeps
// nothing: its rows are computed from the images to net's first cut, and
// net runs on from there).
func (r *Runner) ownAccuracy(net *Frozen, norm [2][]float64, batch int, pool *torch.Workers, stage string) (float64, error) {
	cfg := r.Config
	l, err := data.NewLoader(r.Test, data.Config{BatchSize: batch, Device: cfg.Device, Mean: norm[0], Std: norm[1]})
	if err != nil {
		return 0, err
	}
	c, err := NewActivationCache(net, l, CacheOptions{Off: true, Batch: batch, Workers: pool})
	if err != nil {
		return 0, err
	}
	defer c.Free()
	first := net.CutPoints()[0]
	if err := c.At(first); err != nil {
		return 0, err
	}
	return accuracyCached(func(h *torch.Tensor) *torch.Tensor { return net.ForwardFrom(h, first) }, c, pool, cfg.Progress, stage)
}

// lacksBottomAcc says whether any of rows has no bottom accuracy.
func lacksBottomAcc(rows []results.Row) bool {
	for _, row := range rows {
		if row.BottomAcc == nil {
			return true
		}
	}
	return false
}

// fillBottomAcc gives the rows without a bottom accuracy acc, in rows and in
// the results file.
func (r *Runner) fillBottomAcc(rows []results.Row, acc float64) error {
	var changed []results.Row
	for i := range rows {
		if rows[i].BottomAcc == nil {
			a := acc
			rows[i].BottomAcc = &a
			changed = append(changed, rows[i])
		}
	}
	if err := r.update(changed); err != nil {
		return fmt.Errorf("writing the bottom's accuracy into the rows: %w", err)
	}
	return nil
}

// cutCaches are the caches a cut is stitched from: the bottom's activations
// of the fitting, test and validation images (val nil: no validation), and
// the top's own of the least-squares images (lsTop; nil without the
// least-squares start, whose bottom activations are the fitting images
// lsIndex, nil: all) and of the CKA images (ckaTop; nil: no CKA).
type cutCaches struct {
	fit, test, val *ActivationCache
	lsIndex        []int
	lsTop, ckaTop  *ActivationCache
}

// stitchCached builds, initialises, fits and scores the stitching layer at
// one cut from the caches (see runAll); it follows stitchCut step by step.
// fitIn gives each fitting batch's bottom activations (fitInputs).
func (r *Runner) stitchCached(row *results.Row, cut string, in, out []int64, topF *Frozen, fit *data.Loader, fitIn func(*data.Batch) *torch.Tensor, cs cutCaches, pool *torch.Workers, tag string) error {
	cfg := r.Config
	fitC, testC, lsIndex, lsT, ckaT := cs.fit, cs.test, cs.lsIndex, cs.lsTop, cs.ckaTop
	if err := torch.ManualSeed(uint64(cfg.Seed)); err != nil {
		return err
	}
	layer, err := NewLayer(in, out, cfg.KernelSize)
	if err != nil {
		return err
	}
	defer nn.Free(layer)
	if err := nn.ToDevice(layer, cfg.Device); err != nil {
		return err
	}
	top := func(z *torch.Tensor) *torch.Tensor { return topF.ForwardFrom(z, cut) }
	// scored scores the layer as it is now: folded into one convolution in
	// oneDNN's layout when the top runs in it (foldLayer), else as it is.
	scoredOn := func(c *ActivationCache, report progress.Func, stage string, withLoss bool) (float64, float64, error) {
		forward := func(h *torch.Tensor) *torch.Tensor { return top(layer.Forward(h)) }
		if topF.mkldnn {
			f, ok, err := foldLayer(layer)
			if err != nil {
				return 0, 0, err
			}
			if ok {
				defer f.free()
				forward = func(h *torch.Tensor) *torch.Tensor { return f.forward(h).Then(top) }
			}
		}
		return scoreCached(forward, c, pool, report, stage, withLoss)
	}
	scored := func(stage string) (float64, error) {
		acc, _, err := scoredOn(testC, cfg.Progress, stage, false)
		return acc, err
	}
	if lsT != nil {
		if err := leastSquaresCached(layer, fitC, lsIndex, lsT, pool, cfg.Progress, tag+" least squares"); err != nil {
			return err
		}
		nn.SetTraining(layer, false)
		acc, err := scored(tag + " direct match")
		if err != nil {
			return err
		}
		row.DirectAcc = &acc
	}
	fc := r.fitConfig()
	if cs.val != nil {
		fc.Validate = func() (float64, float64, error) { return scoredOn(cs.val, nil, "", true) }
	}
	outcome, err := fitCached(layer, top, fit, fitIn, fc, pool, cfg.Progress, tag+" fit")
	if err != nil {
		return err
	}
	setFit(row, outcome)
	nn.SetTraining(layer, false)
	if row.StitchedAcc, err = scored(tag + " test"); err != nil {
		return err
	}
	row.Penalty = row.TopAcc - row.StitchedAcc
	if ckaT != nil {
		n := min(ckaT.N(), testC.N())
		x, y := testC.Range(0, n), ckaT.Range(0, n)
		defer torch.FreeAll(x, y)
		if err := torch.FirstError(x, y); err != nil {
			return err
		}
		v, u, err := CKAs(x, y)
		if err != nil {
			return err
		}
		row.CKA, row.CKAUnbiased = &v, u
	}
	return nil
}

// leastSquaresCached is LeastSquaresInit on cached bottom and top (lsT)
// activations at the caches' cut: image i of lsT is image index[i] of the
// bottom's cache (index nil: image i). The batches' products are computed by
// pool's workers and summed in batch order, as one worker would.
func leastSquaresCached(layer *Layer, bottom *ActivationCache, index []int, lsT *ActivationCache, pool *torch.Workers, report progress.Func, stage string) error {
	var acc lstsq
	defer acc.free()
	bar := report.Start(stage, "images", lsT.N())
	step := lsT.opts.Batch
	nb := (lsT.N() + step - 1) / step
	err := inOrder(nb, pool, func(b int) (products, error) {
		var p products
		err := torch.NoGrad(func() error {
			start := b * step
			n := min(step, lsT.N()-start)
			s := torch.NewScope()
			defer s.Close()
			var x *torch.Tensor
			if index != nil {
				x = s.Track(bottom.Rows(index[start : start+n]))
			} else {
				x = s.Track(bottom.Range(start, n))
			}
			y := s.Track(lsT.Range(start, n))
			if err := torch.FirstError(x, y); err != nil {
				return err
			}
			var err error
			p, err = normalProducts(x, y)
			return err
		})
		return p, err
	}, func(b int, p products) error {
		defer p.free()
		if err := acc.addProducts(p); err != nil {
			return err
		}
		bar.Add(min(step, lsT.N()-b*step))
		return nil
	}, products.free)
	if err != nil {
		return fmt.Errorf("least-squares init: %w", err)
	}
	bar.End()
	return acc.solve(layer)
}

// accuracyCached scores forward on the test cache's activations, in batches
// of the cache's batch size shared between pool's workers.
func accuracyCached(forward func(*torch.Tensor) *torch.Tensor, test *ActivationCache, pool *torch.Workers, report progress.Func, stage string) (float64, error) {
	acc, _, err := scoreCached(forward, test, pool, report, stage, false)
	return acc, err
}

// batchScore is one batch's correct predictions and summed cross-entropy.
type batchScore struct {
	correct int64
	loss    float64
}

// scoreCached is accuracyCached with, when withLoss is set, the mean
// cross-entropy beside the accuracy.
func scoreCached(forward func(*torch.Tensor) *torch.Tensor, test *ActivationCache, pool *torch.Workers, report progress.Func, stage string, withLoss bool) (acc, loss float64, err error) {
	if test.N() == 0 {
		return 0, 0, errors.New("evaluate: no samples")
	}
	step := test.opts.Batch
	nb := (test.N() + step - 1) / step
	var correct int64
	var lossSum float64
	bar := report.Start(stage, "images", test.N())
	err = inOrder(nb, pool, func(b int) (batchScore, error) {
		var c batchScore
		err := torch.NoGrad(func() error {
			start := b * step
			n := min(step, test.N()-start)
			// Everything computed from h and y joins the batch's scope and
			// is freed now, not left to the garbage collector's cleanups
			// (which let the process grow by gigabytes per cut).
			s := torch.NewScope()
			defer s.Close()
			h := s.Track(test.Range(start, n))
			y := s.Track(test.Labels(start, n))
			logits := s.Track(forward(h))
			var err error
			if withLoss {
				c.correct, c.loss, _, err = evaluate.CorrectAndLoss(logits, y)
			} else {
				c.correct, err = evaluate.Correct(logits, y)
			}
			return err
		})
		return c, err
	}, func(b int, c batchScore) error {
		correct += c.correct
		lossSum += c.loss
		bar.Add(min(step, test.N()-b*step))
		return nil
	}, func(batchScore) {})
	if err != nil {
		return 0, 0, err
	}
	bar.End()
	return evaluate.Percent(correct, int64(test.N())), lossSum / float64(test.N()), nil
}

// fitCached is Fit with the bottom's activations of each batch given by fitIn
// (see fitInputs): the loader gives each batch's images and labels in the
// order Fit would see them. top runs the frozen top from the cut; each
// batch's loss is splitLoss's, shared between pool's workers.
func fitCached(layer *Layer, top func(*torch.Tensor) *torch.Tensor, loader *data.Loader, fitIn func(*data.Batch) *torch.Tensor, cfg FitConfig, pool *torch.Workers, report progress.Func, stage string) (FitOutcome, error) {
	cfg = cfg.withSteps(loader.Len())
	nn.SetTraining(layer, true)
	defer nn.SetTraining(layer, false)
	run, err := newFitRun(nn.Parameters(layer), cfg, loader.Len()*cfg.Epochs, layer, func(on bool) { nn.SetTraining(layer, on) })
	if err != nil {
		return FitOutcome{}, err
	}
	defer run.close()
	res, err := loop.Train(loop.Run{Epochs: cfg.Epochs, StepsPerEpoch: loader.Len(), Optimizer: run.opt, Schedule: run.sched,
		Stage: stage, OneStage: true, Progress: report, OnStep: run.onStep(),
	}, func(epoch int, step func(loop.Batch) error) error {
		for b, err := range loader.Batches(epoch) {
			if err != nil {
				return err
			}
			z := layer.Forward(fitIn(b))
			err = step(loop.Batch{Loss: splitLoss(z, b.Y, top, pool), N: b.Len()})
			b.Close()
			if err != nil {
				return err
			}
		}
		return nil
	})
	out, err := run.finish(res, err, loader.Len()*cfg.Epochs)
	if err != nil {
		return out, fmt.Errorf("fitting the stitching layer: %w", err)
	}
	return out, nil
}

// splitLoss is the batch's mean cross-entropy of top(z) against labels y,
// with the frozen top's forward and backward passes shared between pool's
// workers. z is the stitching layer's output (its graph reaches the layer's
// parameters; the layer itself runs once, on the whole batch, so its batch
// norms see the whole batch). Each worker runs the top on its part of the
// batch from a detached copy of z and back-propagates its share of the mean
// into that copy; the returned loss has the summed value and back-propagates
// the gathered gradient into z, so loss.Backward() reaches the layer as if
// the top had run on the whole batch (equal up to float rounding). With one
// worker it is the plain loss.
func splitLoss(z, y *torch.Tensor, top func(*torch.Tensor) *torch.Tensor, pool *torch.Workers) *torch.Tensor {
	n, err := z.Size(0)
	if err != nil {
		return torch.ErrTensor(err)
	}
	workers := pool.N()
	if workers <= 1 || n < int64(workers) {
		return torch.CrossEntropy(top(z), y, 0, torch.ReduceMean)
	}
	zd := z.Detach()
	grads := make([]*torch.Tensor, workers)
	losses := make([]float64, workers)
	err = pool.Run(true, func(w int) error {
		// Worker w takes rows [w·n/W, (w+1)·n/W): every part has at
		// least one row, as n ≥ W.
		start := int64(w) * n / int64(workers)
		m := int64(w+1)*n/int64(workers) - start
		zw := zd.Narrow(0, start, m).Detach()
		if err := zw.SetRequiresGrad(true); err != nil {
			return err
		}
		yw := y.Narrow(0, start, m)
		lw := torch.CrossEntropy(top(zw), yw, 0, torch.ReduceSum).DivScalar(float64(n))
		if err := lw.Backward(); err != nil {
			return err
		}
		v, err := lw.Item()
		if err != nil {
			return err
		}
		g := zw.Grad()
		if g == nil {
			return fmt.Errorf("stitch: no gradient reached the top's input")
		}
		losses[w], grads[w] = v, g
		return g.Err()
	})
	if err != nil {
		return torch.ErrTensor(err)
	}
	var total float64
	for _, v := range losses {
		total += v
	}
	g := torch.Cat(grads, 0)
	// surrogate = Σ z·g − (Σ z·g, detached) + total: its value is total and
	// its gradient with respect to z is g.
	dot := z.Mul(g).Sum()
	return dot.Sub(dot.Detach()).AddScalar(total)
}

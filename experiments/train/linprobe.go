package train

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"modelstitch/experiments/invalid"
	"modelstitch/experiments/progress"
	"modelstitch/torch"
)

// LinearProbeConfig is the linear-probe protocol: a multinomial logistic
// regression on standardised frozen features, fit to convergence with
// full-batch L-BFGS, its L2 weight decay chosen on a held-out part of the
// training features (never on test data), then refit on all of them.
type LinearProbeConfig struct {
	// WeightDecays are the candidate penalties λ of the objective
	// mean cross-entropy + λ/2·‖W‖² (the bias is not penalised); nil means
	// DefaultWeightDecays. A single candidate skips the held-out choice.
	WeightDecays []float64
	// HoldOut is the fraction of the training features held out, class by
	// class, to choose the weight decay (0 means 0.1).
	HoldOut float64
	// MaxIter bounds the L-BFGS iterations of each fit (0 means 500).
	MaxIter int
	// Tol stops a fit when the gradient's largest entry is below it (0 means
	// 1e-4, scikit-learn's default for its L-BFGS logistic regression).
	Tol float64
	// Seed draws the held-out part.
	Seed int64
	// Progress receives a "linear probe" stage counting the fits (one per
	// candidate weight decay, then the final one) and a note per fit (nil: none).
	Progress progress.Func
}

// DefaultWeightDecays are the candidate weight decays of a linear probe: every
// decade from 1e-6 to 1e-1.
func DefaultWeightDecays() []float64 {
	return []float64{1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6}
}

// DecayScore is one candidate weight decay's result on the held-out features.
type DecayScore struct {
	WeightDecay float64
	// Accuracy is the held-out accuracy (percent) of the classifier fit on
	// the rest of the training features.
	Accuracy float64
	// Iters is the number of L-BFGS iterations of that fit.
	Iters int
}

// LinearProbe is a fitted linear probe: logits = W·((x − Mean)/Std) + B.
type LinearProbe struct {
	// Classes and Dim are the number of classes and the feature size.
	Classes, Dim int
	// Mean and Std standardise the features (the training features' own
	// per-feature statistics, len Dim).
	Mean, Std []float64
	// W ([Classes·Dim], row-major) and B ([Classes]) act on standardised features.
	W, B []float64
	// WeightDecay is the chosen penalty; Scores the held-out result of every
	// candidate (empty when there was a single candidate).
	WeightDecay float64
	Scores      []DecayScore
	// HeldOut lists the training rows used to choose the weight decay.
	HeldOut []int
	// TrainAccuracy (percent) and Iters are the final fit's on all training features;
	// Converged says whether it met the gradient tolerance (or stopped improving).
	TrainAccuracy float64
	Iters         int
	Converged     bool
}

// FitLinearProbe fits a linear probe by the LinearProbeConfig protocol on the
// training features x [N, d] (any floating dtype, on any device) with labels y
// [N] in [0, classes). It sees no test data: score test features afterwards
// with Accuracy.
func FitLinearProbe(x, y *torch.Tensor, classes int, cfg LinearProbeConfig) (*LinearProbe, error) {
	if err := torch.FirstError(x, y); err != nil {
		return nil, err
	}
	xs0, err := x.Shape()
	if err != nil {
		return nil, fmt.Errorf("linear probe: features: %w", err)
	}
	ys0, err := y.Shape()
	if err != nil {
		return nil, fmt.Errorf("linear probe: labels: %w", err)
	}
	if len(xs0) != 2 || len(ys0) != 1 || xs0[0] != ys0[0] {
		return nil, fmt.Errorf("linear probe: want features [N, d] and labels [N], got %v and %v", xs0, ys0)
	}
	if classes < 2 {
		return nil, fmt.Errorf("linear probe: need at least 2 classes, got %d", classes)
	}
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("linear probe: %w", err)
	}
	labels, err := y.ToDeviceDType(torch.CPU, torch.Int64).Int64s()
	if err != nil {
		return nil, fmt.Errorf("linear probe: labels: %w", err)
	}
	for i, l := range labels {
		if l < 0 || l >= int64(classes) {
			return nil, fmt.Errorf("linear probe: label %d of row %d is outside [0, %d)", l, i, classes)
		}
	}

	s := torch.NewScope()
	defer s.Close()
	x64 := s.Track(x.ToDeviceDType(torch.CPU, torch.Float64))
	mu := x64.MeanDims([]int64{0}, true)
	sigma := x64.Var([]int64{0}, false, true).AddScalar(1e-5).Sqrt()
	xs := x64.Sub(mu).Div(sigma)
	if err := torch.FirstError(xs); err != nil {
		return nil, fmt.Errorf("linear probe: standardising features: %w", err)
	}
	p := &LinearProbe{Classes: classes, Dim: int(xs0[1])}
	if p.Mean, err = mu.Float64s(); err == nil {
		p.Std, err = sigma.Float64s()
	}
	if err != nil {
		return nil, fmt.Errorf("linear probe: %w", err)
	}
	theta := make([]float64, classes*p.Dim+classes)

	decays := slices.Clone(cfg.WeightDecays)
	slices.Sort(decays)
	slices.Reverse(decays) // strongest first: each fit warm-starts the next, weaker one
	p.WeightDecay = decays[0]
	fits := 1
	if len(decays) > 1 {
		fits += len(decays)
	}
	stage := cfg.Progress.Start("linear probe", "fits", fits)
	defer stage.End()
	if len(decays) > 1 {
		if theta, err = p.chooseDecay(s, xs, labels, decays, theta, cfg, stage); err != nil {
			return nil, fmt.Errorf("linear probe: %w", err)
		}
	}
	all := make([]int, len(labels))
	for i := range all {
		all[i] = i
	}
	full, err := newSoftmaxProblem(s, xs, labels, all, classes)
	if err != nil {
		return nil, fmt.Errorf("linear probe: %w", err)
	}
	theta, p.Iters, p.Converged, err = lbfgs(func(t []float64) (float64, []float64, error) { return full.loss(t, p.WeightDecay) }, theta, cfg.MaxIter, cfg.Tol)
	if err != nil {
		return nil, fmt.Errorf("linear probe: final fit: %w", err)
	}
	if p.TrainAccuracy, err = full.accuracy(theta); err != nil {
		return nil, fmt.Errorf("linear probe: %w", err)
	}
	p.W, p.B = theta[:classes*p.Dim], theta[classes*p.Dim:]
	stage.SetDetail("weight decay %.3g: train %.2f%%", p.WeightDecay, p.TrainAccuracy)
	stage.Add(1)
	stage.End()
	cfg.Progress.Notef("linear probe: weight decay %.3g chosen; fit on all %d training rows: train accuracy %.2f%% (%d iterations, converged %v)",
		p.WeightDecay, len(labels), p.TrainAccuracy, p.Iters, p.Converged)
	return p, nil
}

// check fills in the defaults of cfg's zero fields and checks the rest.
func (cfg *LinearProbeConfig) check() error {
	if cfg.WeightDecays == nil {
		cfg.WeightDecays = DefaultWeightDecays()
	}
	if len(cfg.WeightDecays) == 0 {
		return invalid.Errorf("weight decays", "is empty: give at least one candidate")
	}
	for _, l := range cfg.WeightDecays {
		if !(l >= 0) || math.IsInf(l, 0) {
			return invalid.Errorf("weight decays", "must be finite and ≥ 0, got %g", l)
		}
	}
	if cfg.HoldOut == 0 {
		cfg.HoldOut = 0.1
	}
	if !(cfg.HoldOut > 0 && cfg.HoldOut < 1) {
		return invalid.Errorf("holdout", "must be in (0, 1), got %g", cfg.HoldOut)
	}
	if cfg.MaxIter == 0 {
		cfg.MaxIter = 500
	}
	if cfg.Tol == 0 {
		cfg.Tol = 1e-4
	}
	if cfg.MaxIter < 1 {
		return invalid.Errorf("max iter", "must be at least 1, got %d", cfg.MaxIter)
	}
	if !(cfg.Tol > 0) {
		return invalid.Errorf("tol", "must be positive, got %g", cfg.Tol)
	}
	return nil
}

// chooseDecay fits the probe with each of decays (strongest first, each fit
// warm-starting the next) on the training rows not held out, scores it on
// the held-out rows, and sets p.WeightDecay to the best (ties keep the
// stronger); it returns the best fit's parameters, the final fit's start.
func (p *LinearProbe) chooseDecay(s *torch.Scope, xs *torch.Tensor, labels []int64, decays, theta []float64, cfg LinearProbeConfig, stage *progress.Stage) ([]float64, error) {
	fitRows, heldRows := holdOut(labels, p.Classes, cfg.HoldOut, cfg.Seed)
	if len(fitRows) == 0 || len(heldRows) == 0 {
		return nil, fmt.Errorf("%d training rows are too few to hold %g of them out", len(labels), cfg.HoldOut)
	}
	p.HeldOut = heldRows
	fit, err := newSoftmaxProblem(s, xs, labels, fitRows, p.Classes)
	if err != nil {
		return nil, err
	}
	held, err := newSoftmaxProblem(s, xs, labels, heldRows, p.Classes)
	if err != nil {
		return nil, err
	}
	best, bestTheta := -1.0, theta
	start := theta
	for _, l := range decays {
		th, it, _, err := lbfgs(func(t []float64) (float64, []float64, error) { return fit.loss(t, l) }, start, cfg.MaxIter, cfg.Tol)
		if err != nil {
			return nil, fmt.Errorf("weight decay %g: %w", l, err)
		}
		acc, err := held.accuracy(th)
		if err != nil {
			return nil, err
		}
		stage.SetDetail("weight decay %.3g: held-out %.2f%%", l, acc)
		stage.Add(1)
		cfg.Progress.Notef("linear probe: weight decay %.3g: held-out accuracy %.2f%% (%d L-BFGS iterations)", l, acc, it)
		p.Scores = append(p.Scores, DecayScore{WeightDecay: l, Accuracy: acc, Iters: it})
		if acc > best { // ties keep the stronger decay
			best, bestTheta, p.WeightDecay = acc, th, l
		}
		start = th
	}
	return bestTheta, nil
}

// Folded returns the probe as a plain linear layer on unstandardised features:
// weight W/Std [Classes, Dim] and bias B − (W/Std)·Mean [Classes], float32 CPU
// tensors owned by the caller.
func (p *LinearProbe) Folded() (w, b *torch.Tensor) {
	wf := make([]float32, len(p.W))
	bf := make([]float32, p.Classes)
	for c := 0; c < p.Classes; c++ {
		bias := p.B[c]
		for j := 0; j < p.Dim; j++ {
			v := p.W[c*p.Dim+j] / p.Std[j]
			wf[c*p.Dim+j] = float32(v)
			bias -= v * p.Mean[j]
		}
		bf[c] = float32(bias)
	}
	return torch.FromSlice(wf, int64(p.Classes), int64(p.Dim)), torch.FromSlice(bf)
}

// Accuracy returns the probe's accuracy (percent) on features x [N, Dim] with
// labels y [N].
func (p *LinearProbe) Accuracy(x, y *torch.Tensor) (float64, error) {
	if err := torch.FirstError(x, y); err != nil {
		return 0, err
	}
	xs, err := x.Shape()
	if err != nil {
		return 0, fmt.Errorf("linear probe: features: %w", err)
	}
	ys, err := y.Shape()
	if err != nil {
		return 0, fmt.Errorf("linear probe: labels: %w", err)
	}
	if len(xs) != 2 || xs[1] != int64(p.Dim) || len(ys) != 1 || ys[0] != xs[0] {
		return 0, fmt.Errorf("linear probe: want features [N, %d] and labels [N], got %v and %v", p.Dim, xs, ys)
	}
	s := torch.NewScope()
	defer s.Close()
	w, b := p.Folded()
	s.Track(w)
	s.Track(b)
	return linearAccuracy(s.Track(x.ToDeviceDType(torch.CPU, torch.Float32)), s.Track(y.ToDeviceDType(torch.CPU, torch.Int64)), w, b)
}

// holdOut splits rows 0..len(labels)-1 class by class: a fraction frac of each
// class's rows (at least one when the class has two or more), drawn with seed,
// is held out. Both lists are sorted.
func holdOut(labels []int64, classes int, frac float64, seed int64) (fit, held []int) {
	byClass := make([][]int, classes)
	for i, l := range labels {
		byClass[l] = append(byClass[l], i)
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 0x484f4c444f5554)) // "HOLDOUT"
	for _, rows := range byClass {
		rng.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
		k := int(math.Round(frac * float64(len(rows))))
		if k == 0 && len(rows) >= 2 {
			k = 1
		}
		held = append(held, rows[:k]...)
		fit = append(fit, rows[k:]...)
	}
	slices.Sort(fit)
	slices.Sort(held)
	return fit, held
}

// softmaxProblem is multinomial logistic regression on fixed rows of
// standardised features.
type softmaxProblem struct {
	x, onehot, y *torch.Tensor // [n, d] float64, [n, C] float64, [n] int64
	n, d, c      int
}

func newSoftmaxProblem(s *torch.Scope, xs *torch.Tensor, labels []int64, rows []int, classes int) (*softmaxProblem, error) {
	idx := make([]int64, len(rows))
	ys := make([]int64, len(rows))
	ohs := make([]float64, len(rows)*classes)
	for i, r := range rows {
		idx[i], ys[i] = int64(r), labels[r]
		ohs[i*classes+int(labels[r])] = 1
	}
	x := xs.IndexSelect(0, s.Track(torch.FromSlice(idx))).Contiguous()
	y := s.Track(torch.FromSlice(ys))
	oh := s.Track(torch.FromSlice(ohs, int64(len(rows)), int64(classes)))
	if err := torch.FirstError(x, y, oh); err != nil {
		return nil, err
	}
	d, err := xs.Size(1)
	if err != nil {
		return nil, err
	}
	return &softmaxProblem{x: x, onehot: oh, y: y, n: len(rows), d: int(d), c: classes}, nil
}

// loss returns mean cross-entropy + λ/2·‖W‖² at theta = (W row-major, B) and its gradient.
func (p *softmaxProblem) loss(theta []float64, lambda float64) (float64, []float64, error) {
	s := torch.NewScope()
	defer s.Close()
	nw := p.c * p.d
	w := s.Track(torch.FromSlice(theta[:nw], int64(p.c), int64(p.d)))
	b := s.Track(torch.FromSlice(theta[nw:], int64(p.c)))
	// p.x belongs to the fit's scope, and a result joins its first operand's
	// scope: track the product here, or every evaluation would keep two
	// [n, C] tensors alive until the fit ends (gigabytes over an L-BFGS fit
	// on 54,000 rows).
	logp := torch.LogSoftmax(s.Track(p.x.Mm(w.T())).Add(b), 1)
	ce := logp.Mul(p.onehot).Sum()
	g := logp.Exp().Sub(p.onehot).DivScalar(float64(p.n)) // dCE/dlogits
	gw := g.T().Mm(p.x)
	gb := g.SumDims([]int64{0}, false)
	if err := torch.FirstError(ce, gw, gb); err != nil {
		return 0, nil, err
	}
	f, err := ce.Item()
	if err != nil {
		return 0, nil, err
	}
	gwv, err := gw.Float64s()
	if err != nil {
		return 0, nil, err
	}
	gbv, err := gb.Float64s()
	if err != nil {
		return 0, nil, err
	}
	f = -f / float64(p.n)
	grad := append(gwv, gbv...)
	for i := 0; i < nw; i++ {
		f += lambda / 2 * theta[i] * theta[i]
		grad[i] += lambda * theta[i]
	}
	return f, grad, nil
}

// accuracy returns the accuracy (percent) of theta on the problem's rows.
func (p *softmaxProblem) accuracy(theta []float64) (float64, error) {
	s := torch.NewScope()
	defer s.Close()
	nw := p.c * p.d
	w := s.Track(torch.FromSlice(theta[:nw], int64(p.c), int64(p.d)))
	b := s.Track(torch.FromSlice(theta[nw:], int64(p.c)))
	return linearAccuracy(p.x, p.y, w, b)
}

// lbfgs minimises f from x0 with limited-memory BFGS (10 pairs) and a
// backtracking Armijo line search. It stops when the gradient's largest entry
// is at most tol, or the objective's relative decrease falls below 1e-10
// (both count as converged), or after maxIter iterations.
func lbfgs(f func([]float64) (float64, []float64, error), x0 []float64, maxIter int, tol float64) (x []float64, iters int, converged bool, err error) {
	const memory, c1, ftol = 10, 1e-4, 1e-10
	x = slices.Clone(x0)
	fx, g, err := f(x)
	if err != nil {
		return nil, 0, false, err
	}
	if math.IsNaN(fx) || math.IsInf(fx, 0) {
		return nil, 0, false, fmt.Errorf("objective is %g at the start", fx)
	}
	var ss, ys [][]float64
	var rhos []float64
	n := len(x)
	d := make([]float64, n)
	xn := make([]float64, n)
	for iters = 0; iters < maxIter; iters++ {
		if infNorm(g) <= tol {
			return x, iters, true, nil
		}
		// Two-loop recursion: d = −H·g.
		copy(d, g)
		alpha := make([]float64, len(ss))
		for i := len(ss) - 1; i >= 0; i-- {
			alpha[i] = rhos[i] * dot(ss[i], d)
			axpy(-alpha[i], ys[i], d)
		}
		if k := len(ss) - 1; k >= 0 {
			scale(d, dot(ss[k], ys[k])/dot(ys[k], ys[k]))
		}
		for i := range ss {
			beta := rhos[i] * dot(ys[i], d)
			axpy(alpha[i]-beta, ss[i], d)
		}
		scale(d, -1)
		gd := dot(g, d)
		step := 1.0
		if gd >= 0 || len(ss) == 0 { // no curvature yet, or not a descent direction: steepest descent
			copy(d, g)
			scale(d, -1)
			gd = -dot(g, g)
			step = 1 / math.Max(1, math.Sqrt(-gd))
			ss, ys, rhos = nil, nil, nil
		}
		var fn float64
		var gn []float64
		for ls := 0; ; ls++ {
			for i := range xn {
				xn[i] = x[i] + step*d[i]
			}
			if fn, gn, err = f(xn); err != nil {
				return nil, iters, false, err
			}
			if fn <= fx+c1*step*gd {
				break
			}
			if ls == 40 {
				return x, iters, false, nil // no decrease along d: as good as it gets in float64
			}
			step /= 2
		}
		sv, yv := make([]float64, n), make([]float64, n)
		for i := range sv {
			sv[i], yv[i] = xn[i]-x[i], gn[i]-g[i]
		}
		if sy := dot(sv, yv); sy > 1e-12*dot(yv, yv) {
			if len(ss) == memory {
				ss, ys, rhos = ss[1:], ys[1:], rhos[1:]
			}
			ss, ys, rhos = append(ss, sv), append(ys, yv), append(rhos, 1/sy)
		}
		decrease := fx - fn
		copy(x, xn)
		fx, g = fn, gn
		if decrease <= ftol*math.Max(1, math.Abs(fx)) {
			return x, iters + 1, true, nil
		}
	}
	return x, iters, infNorm(g) <= tol, nil
}

func dot(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

func axpy(a float64, x, y []float64) {
	for i := range x {
		y[i] += a * x[i]
	}
}

func scale(x []float64, a float64) {
	for i := range x {
		x[i] *= a
	}
}

func infNorm(x []float64) float64 {
	var m float64
	for _, v := range x {
		m = math.Max(m, math.Abs(v))
	}
	return m
}

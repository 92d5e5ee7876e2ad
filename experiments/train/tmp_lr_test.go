package train

import (
	"flag"
	"testing"

	"modelstitch/experiments/models"
	"modelstitch/torch"
	"modelstitch/torch/nn"
	"modelstitch/torch/vision/data"
)

var rnd = flag.Bool("rnd", false, "")
var trainBN = flag.Bool("trainbn", false, "")

func setBNMomentum(m nn.Module) {
	if bn, ok := m.(*nn.BatchNorm); ok {
		bn.Momentum = 0.5
	}
	for _, c := range nn.Children(m) {
		setBNMomentum(c.Module)
	}
}

func TestTmpProbeLR(t *testing.T) {
	torch.SetNumThreads(2)
	m, err := models.Load("/tmp/sc1.pt", models.LoadOptions{})
	if *rnd {
		m, err = models.NewRandom(m.Meta, 3, torch.CPU)
	}
	if err != nil {
		t.Fatal(err)
	}
	tr, te, err := LoadSplits(DataConfig{Name: "fashion-mnist", TrainSamples: 5000, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	te, _ = te.Subset(2000, 1)
	if *trainBN {
		// recompute BN running stats with 1024 training images, cumulative
		for _, n := range nn.NamedBuffers(m.Net) {
			_ = n
		}
		setBNMomentum(m.Net)
		nn.Train(m.Net)
		l, _ := data.NewLoader(tr, data.Config{BatchSize: 256, Mean: m.Meta.Mean, Std: m.Meta.Std})
		torch.NoGrad(func() {
			k := 0
			for b, _ := range l.Batches(0) {
				m.Net.Forward(b.X)
				b.Close()
				k++
				if k == 8 {
					break
				}
			}
		})
	}
	x, y, _ := Features(m.Net, tr, m.Meta.Mean, m.Meta.Std, 256, torch.CPU, nil)
	tx, ty, _ := Features(m.Net, te, m.Meta.Mean, m.Meta.Std, 256, torch.CPU, nil)
	mu := x.MeanDims([]int64{0}, true)
	sg := x.Var([]int64{0}, false, true).AddScalar(1e-5).Sqrt()
	xs := x.Sub(mu).Div(sg)
	txs := tx.Sub(mu).Div(sg)
	{
		ones := torch.Ones([]int64{xs.Size(0), 1})
		x1 := torch.Cat([]*torch.Tensor{xs, ones}, 1)
		oh := torch.OneHot(y, 10).To(torch.Float32)
		w := x1.Pinverse().Mm(oh)
		tx1 := torch.Cat([]*torch.Tensor{txs, torch.Ones([]int64{txs.Size(0), 1})}, 1)
		c, _ := tx1.Mm(w).Argmax(1, false).Eq(ty).Sum().ItemInt()
		c2, _ := x1.Mm(w).Argmax(1, false).Eq(y).Sum().ItemInt()
		t.Logf("least squares: train %.2f test %.2f", 100*float64(c2)/float64(xs.Size(0)), 100*float64(c)/float64(txs.Size(0)))
	}
	for _, c := range []struct {
		lr float64
		ep int
		bs int
	}{{1e-2, 30, 256}} {
		torch.ManualSeed(0)
		fc := nn.NewLinear(x.Size(1), 10, true)
		cfg := ProbeConfig{Epochs: c.ep, BatchSize: c.bs, LR: c.lr}
		if err := fitLinear(fc, xs, y, cfg); err != nil {
			t.Fatal(err)
		}
		tra, _ := linearAccuracy(xs, y, fc.Weight, fc.Bias)
		acc, _ := linearAccuracy(txs, ty, fc.Weight, fc.Bias)
		t.Logf("lr %g epochs %d bs %d: train %.2f test %.2f", c.lr, c.ep, c.bs, tra, acc)
	}
}

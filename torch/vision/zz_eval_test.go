package vision

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"modelstitch/torch"
	"modelstitch/torch/nn"
)

func TestZZEval(t *testing.T) {
	runtime.LockOSThread()
	torch.ManualSeed(0)
	model, _ := NewResNet(benchConfig)
	nn.Eval(model)
	nn.Freeze(model)
	x := torch.Randn([]int64{benchBatch, 1, 28, 28})
	n, _ := strconv.Atoi(os.Getenv("N"))
	step := func() {
		torch.NoGrad(func() {
			s := torch.NewScope()
			defer s.Close()
			model.Forward(s.Track(x.Ref())).Err()
		})
	}
	for i := 0; i < 3; i++ { step() }
	t0 := time.Now()
	for i := 0; i < n; i++ { step() }
	fmt.Printf("go eval: %.1f ms/step\n", float64(time.Since(t0).Microseconds())/1000/float64(n))
}

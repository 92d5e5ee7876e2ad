package torch_test

import (
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"modelstitch/torch"
)

// roundTrip copies data into a tensor, checks dtype and shape, copies it back,
// and also sends it through float64 and back.
func roundTrip[T torch.Element](t *testing.T, want torch.DType, data []T) {
	t.Helper()
	x := torch.FromSlice(data, 2, int64(len(data)/2))
	defer x.Free()
	if err := x.Err(); err != nil {
		t.Fatalf("%v: %v", want, err)
	}
	if x.DType() != want || !slices.Equal(shapeOf(t, x), []int64{2, int64(len(data) / 2)}) || x.Numel() != int64(len(data)) {
		t.Errorf("%v: got %v shape %v numel %d", want, x.DType(), shapeOf(t, x), x.Numel())
	}
	got, err := torch.ToSlice[T](x)
	if err != nil || !reflect.DeepEqual(got, data) {
		t.Errorf("%v: round trip %v (%v), want %v", want, got, err, data)
	}
	y := x.To(torch.Float64).To(want)
	defer y.Free()
	if got, err := torch.ToSlice[T](y); err != nil || !reflect.DeepEqual(got, data) {
		t.Errorf("%v: via float64 %v (%v), want %v", want, got, err, data)
	}
}

func TestDTypeRoundTrips(t *testing.T) {
	roundTrip(t, torch.Float32, []float32{1.5, -2, 3.25, float32(math.Inf(1)), 1e-30, -0})
	roundTrip(t, torch.Float64, []float64{1.5, -2, math.Pi, 1e-300})
	roundTrip(t, torch.Int64, []int64{1 << 40, -3, 0, 7})
	roundTrip(t, torch.Int32, []int32{math.MaxInt32, -3, 0, 7})
	roundTrip(t, torch.Int16, []int16{-300, 2})
	roundTrip(t, torch.Int8, []int8{-128, 127})
	roundTrip(t, torch.Uint8, []uint8{0, 255, 1, 128})
	roundTrip(t, torch.Bool, []bool{true, false, false, true})

	// Half precisions have no Go type: go through float32.
	src := torch.FromSlice([]float32{1.5, -2, 1024, 1.0 / 3})
	defer src.Free()
	for _, c := range []struct {
		dt    torch.DType
		third float32 // 1/3 rounded to the type
	}{{torch.Float16, 0.333251953125}, {torch.BFloat16, 0.333984375}} {
		h := src.To(c.dt)
		if h.DType() != c.dt || h.DType().Size() != 2 {
			t.Errorf("%v: dtype %v size %d", c.dt, h.DType(), h.DType().Size())
		}
		got, err := h.Float32s()
		if want := []float32{1.5, -2, 1024, c.third}; err != nil || !slices.Equal(got, want) {
			t.Errorf("%v: %v (%v), want %v", c.dt, got, err, want)
		}
		if _, err := torch.ToSlice[float32](h); err == nil {
			t.Errorf("ToSlice[float32] of a %v tensor succeeded", c.dt)
		}
		h.Free()
	}

	// Conversions truncate toward zero and map non-zero to true.
	f := torch.FromSlice([]float32{1.7, -1.7, 0, 2})
	defer f.Free()
	if got, _ := f.Int64s(); !slices.Equal(got, []int64{1, -1, 0, 2}) {
		t.Errorf("float→int64: %v", got)
	}
	b := f.To(torch.Bool)
	defer b.Free()
	if got, _ := torch.ToSlice[bool](b); !slices.Equal(got, []bool{true, true, false, true}) {
		t.Errorf("float→bool: %v", got)
	}
	if _, err := torch.ToSlice[int64](f); err == nil {
		t.Error("ToSlice[int64] of float32 succeeded")
	}
}

func TestDTypeNames(t *testing.T) {
	for _, d := range []torch.DType{torch.Float32, torch.Float64, torch.Float16, torch.BFloat16, torch.Int64,
		torch.Int32, torch.Int16, torch.Int8, torch.Uint8, torch.Bool} {
		p, err := torch.ParseDType(d.String())
		if err != nil || p != d {
			t.Errorf("ParseDType(%q) = %v, %v", d.String(), p, err)
		}
	}
	if _, err := torch.ParseDType("complex"); err == nil {
		t.Error("ParseDType(complex) succeeded")
	}
	for _, c := range []struct {
		s    string
		want torch.DType
	}{{"half", torch.Float16}, {"bf16", torch.BFloat16}, {"long", torch.Int64}, {"double", torch.Float64}} {
		if d, _ := torch.ParseDType(c.s); d != c.want {
			t.Errorf("ParseDType(%q) = %v", c.s, d)
		}
	}
}

func floats(t *testing.T, x *torch.Tensor) []float64 {
	t.Helper()
	v, err := x.Float64s()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestCreation(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	i64 := torch.Options{DType: torch.Int64}
	f64 := torch.Options{DType: torch.Float64}
	cases := []struct {
		name  string
		x     *torch.Tensor
		dtype torch.DType
		shape []int64
		want  []float64
	}{
		{"zeros", torch.Zeros([]int64{2, 2}), torch.Float32, []int64{2, 2}, []float64{0, 0, 0, 0}},
		{"ones int64", torch.Ones([]int64{3}, i64), torch.Int64, []int64{3}, []float64{1, 1, 1}},
		{"full", torch.Full([]int64{1, 2}, 2.5, f64), torch.Float64, []int64{1, 2}, []float64{2.5, 2.5}},
		{"empty shape", torch.Zeros([]int64{0, 3}), torch.Float32, []int64{0, 3}, []float64{}},
		{"arange", torch.Arange(0, 5, 1), torch.Float32, []int64{5}, []float64{0, 1, 2, 3, 4}},
		{"arange step", torch.Arange(1, 2, 0.25, f64), torch.Float64, []int64{4}, []float64{1, 1.25, 1.5, 1.75}},
		{"arange int64", torch.Arange(5, 0, -2, i64), torch.Int64, []int64{3}, []float64{5, 3, 1}},
		{"eye", torch.Eye(2), torch.Float32, []int64{2, 2}, []float64{1, 0, 0, 1}},
		{"scalar", torch.Scalar(2.5), torch.Float32, []int64{}, []float64{2.5}},
		{"from slice", torch.FromSlice([]int32{1, 2, 3, 4, 5, 6}, 3, 2), torch.Int32, []int64{3, 2}, []float64{1, 2, 3, 4, 5, 6}},
	}
	for _, c := range cases {
		x := s.Track(c.x)
		if err := x.Err(); err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if x.DType() != c.dtype || !slices.Equal(shapeOf(t, x), c.shape) || dimOf(t, x) != len(c.shape) {
			t.Errorf("%s: %v", c.name, x)
		}
		if got := floats(t, x); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	if v, err := s.Track(torch.Scalar(2.5)).Item(); err != nil || v != 2.5 {
		t.Errorf("Item: %v, %v", v, err)
	}
	if v, err := s.Track(torch.Full([]int64{1}, 7, i64)).ItemInt(); err != nil || v != 7 {
		t.Errorf("ItemInt: %v, %v", v, err)
	}
	if _, err := s.Track(torch.Ones([]int64{2})).Item(); err == nil {
		t.Error("Item of a 2-element tensor succeeded")
	}

	// Random tensors: ranges and rough moments.
	r := floats(t, s.Track(torch.Rand([]int64{10000})))
	if slices.Min(r) < 0 || slices.Max(r) >= 1 {
		t.Errorf("rand outside [0,1): %v..%v", slices.Min(r), slices.Max(r))
	}
	n := s.Track(torch.Randn([]int64{100, 100}))
	if m, _ := n.Mean().Item(); math.Abs(m) > 0.05 {
		t.Errorf("randn mean %v", m)
	}
	if sd, _ := n.Std(nil, true, false).Item(); math.Abs(sd-1) > 0.05 {
		t.Errorf("randn std %v", sd)
	}
	ri := s.Track(torch.RandInt(3, 7, []int64{1000}))
	if ri.DType() != torch.Int64 {
		t.Errorf("randint dtype %v", ri.DType())
	}
	iv, _ := ri.Int64s()
	seen := map[int64]bool{}
	for _, v := range iv {
		seen[v] = true
		if v < 3 || v >= 7 {
			t.Fatalf("randint value %d outside [3,7)", v)
		}
	}
	if len(seen) != 4 {
		t.Errorf("randint drew %d distinct values, want 4", len(seen))
	}
	perm, _ := s.Track(torch.RandPerm(50)).Int64s()
	slices.Sort(perm)
	for i, v := range perm {
		if v != int64(i) {
			t.Fatalf("randperm is not a permutation: %v", perm)
		}
	}
}

// draw makes one of each random kind from o and returns all values.
func draw(t *testing.T, s *torch.Scope, o torch.Options) []float64 {
	t.Helper()
	var out []float64
	for _, x := range []*torch.Tensor{
		torch.Rand([]int64{5}, o), torch.Randn([]int64{20}, o), torch.RandInt(0, 100, []int64{5}, o), torch.RandPerm(8, o),
	} {
		out = append(out, floats(t, s.Track(x))...)
	}
	u := s.Track(torch.Zeros([]int64{4}))
	if err := u.FillUniform(-1, 1, o.Generator); err != nil {
		t.Fatal(err)
	}
	if err := u.FillNormal(3, 2, o.Generator); err != nil {
		t.Fatal(err)
	}
	return append(out, floats(t, u)...)
}

func TestSeededDeterminism(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	gen := func(seed uint64) torch.Options {
		g, err := torch.NewGenerator(seed, torch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(g.Close)
		return torch.Options{Generator: g}
	}
	a, b, c := draw(t, s, gen(42)), draw(t, s, gen(42)), draw(t, s, gen(43))
	if !slices.Equal(a, b) {
		t.Error("two generators with seed 42 differ")
	}
	if slices.Equal(a, c) {
		t.Error("seeds 42 and 43 draw the same numbers")
	}
	// A generator's stream does not depend on the global one.
	g := gen(7)
	first := draw(t, s, g)
	_ = torch.ManualSeed(99)
	_ = draw(t, s, torch.Options{})
	if again := draw(t, s, gen(7)); !slices.Equal(first, again) {
		t.Error("generator stream changed by global draws")
	}
	// The global generator after ManualSeed.
	if err := torch.ManualSeed(5); err != nil {
		t.Fatal(err)
	}
	x := draw(t, s, torch.Options{})
	_ = torch.ManualSeed(5)
	if y := draw(t, s, torch.Options{}); !slices.Equal(x, y) {
		t.Error("ManualSeed(5) twice drew different numbers")
	}
}

// build returns the row-major values of a tensor of shape whose element at
// index i is f(i).
func build(shape []int64, f func(i []int64) float64) []float64 {
	n := int64(1)
	for _, s := range shape {
		n *= s
	}
	out := make([]float64, 0, n)
	idx := make([]int64, len(shape))
	for k := int64(0); k < n; k++ {
		out = append(out, f(idx))
		for d := len(shape) - 1; d >= 0; d-- {
			idx[d]++
			if idx[d] < shape[d] {
				break
			}
			idx[d] = 0
		}
	}
	return out
}

func TestShapeOps(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	// x[i][j][k] = 12i + 4j + k
	x := s.Track(torch.Arange(0, 24, 1)).Reshape(2, 3, 4)
	at := func(i, j, k int64) float64 { return float64(12*i + 4*j + k) }
	y := s.Track(torch.Arange(100, 124, 1)).Reshape(2, 3, 4)
	idx := s.Track(torch.FromSlice([]int64{2, 0}))
	seq := func(n int) []float64 {
		return build([]int64{int64(n)}, func(i []int64) float64 { return float64(i[0]) })
	}
	cases := []struct {
		name  string
		got   *torch.Tensor
		shape []int64
		want  []float64
	}{
		{"reshape", x.Reshape(4, -1), []int64{4, 6}, seq(24)},
		{"view", x.View(6, 4), []int64{6, 4}, seq(24)},
		{"flatten", x.Flatten(1, -1), []int64{2, 12}, seq(24)},
		{"permute", x.Permute(2, 0, 1), []int64{4, 2, 3}, build([]int64{4, 2, 3}, func(i []int64) float64 { return at(i[1], i[2], i[0]) })},
		{"transpose", x.Transpose(1, 2), []int64{2, 4, 3}, build([]int64{2, 4, 3}, func(i []int64) float64 { return at(i[0], i[2], i[1]) })},
		{"contiguous view", x.Transpose(0, 2).Contiguous().View(-1), []int64{24}, build([]int64{4, 3, 2}, func(i []int64) float64 { return at(i[2], i[1], i[0]) })},
		{"cat dim 0", torch.Cat([]*torch.Tensor{x, y}, 0), []int64{4, 3, 4}, append(seq(24), build([]int64{24}, func(i []int64) float64 { return float64(100 + i[0]) })...)},
		{"cat dim 2", torch.Cat([]*torch.Tensor{x, y}, 2), []int64{2, 3, 8}, build([]int64{2, 3, 8}, func(i []int64) float64 {
			if i[2] < 4 {
				return at(i[0], i[1], i[2])
			}
			return 100 + at(i[0], i[1], i[2]-4)
		})},
		{"stack dim 1", torch.Stack([]*torch.Tensor{x, y}, 1), []int64{2, 2, 3, 4}, build([]int64{2, 2, 3, 4}, func(i []int64) float64 {
			return float64(100*i[1]) + at(i[0], i[2], i[3])
		})},
		{"slice", x.Slice(2, 1, 4, 2), []int64{2, 3, 2}, build([]int64{2, 3, 2}, func(i []int64) float64 { return at(i[0], i[1], 1+2*i[2]) })},
		{"narrow", x.Narrow(1, 1, 2), []int64{2, 2, 4}, build([]int64{2, 2, 4}, func(i []int64) float64 { return at(i[0], i[1]+1, i[2]) })},
		{"select", x.Select(1, 2), []int64{2, 4}, build([]int64{2, 4}, func(i []int64) float64 { return at(i[0], 2, i[1]) })},
		{"index_select", x.IndexSelect(1, idx), []int64{2, 2, 4}, build([]int64{2, 2, 4}, func(i []int64) float64 { return at(i[0], 2-2*i[1], i[2]) })},
		{"unsqueeze squeeze", x.Unsqueeze(1).Squeeze(1), []int64{2, 3, 4}, seq(24)},
		{"expand", x.Select(0, 0).Select(0, 0).Unsqueeze(0).Expand(2, -1), []int64{2, 4}, []float64{0, 1, 2, 3, 0, 1, 2, 3}},
		{"repeat", x.Select(0, 0).Select(0, 0).Repeat(2), []int64{8}, []float64{0, 1, 2, 3, 0, 1, 2, 3}},
		{"flip", x.Flip(2), []int64{2, 3, 4}, build([]int64{2, 3, 4}, func(i []int64) float64 { return at(i[0], i[1], 3-i[2]) })},
		{"pad", x.Select(0, 0).Narrow(0, 0, 1).Pad([]int64{1, 2}, -1), []int64{1, 7}, []float64{-1, 0, 1, 2, 3, -1, -1}},
		{"where", torch.Where(x.GtScalar(11.5), x, y), []int64{2, 3, 4}, build([]int64{2, 3, 4}, func(i []int64) float64 {
			if v := at(i[0], i[1], i[2]); v > 11.5 {
				return v
			}
			return 100 + at(i[0], i[1], i[2])
		})},
		{"where broadcast", torch.Where(x.GtScalar(11.5), x, s.Track(torch.Scalar(-1))), []int64{2, 3, 4}, build([]int64{2, 3, 4}, func(i []int64) float64 {
			if i[0] == 1 {
				return at(i[0], i[1], i[2])
			}
			return -1
		})},
	}
	for _, c := range cases {
		if err := c.got.Err(); err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if s, err := c.got.Shape(); err != nil || !slices.Equal(s, c.shape) {
			t.Errorf("%s: shape %v (error %v), want %v", c.name, s, err, c.shape)
		}
		if got := floats(t, c.got); !slices.Equal(got, c.want) {
			t.Errorf("%s:\n got  %v\n want %v", c.name, got, c.want)
		}
	}
	// Views share memory with their base.
	v := x.Narrow(2, 0, 1)
	if err := torch.NoGrad(func() error { return v.Fill(-5) }); err != nil {
		t.Fatal(err)
	}
	if got := floats(t, x)[4]; got != -5 {
		t.Errorf("write through a view: x[0][1][0] = %v, want -5", got)
	}
	// Size, negative dims.
	last, err1 := x.Size(-1)
	first, err2 := x.Size(0)
	if last != 4 || first != 2 || err1 != nil || err2 != nil {
		t.Errorf("Size(-1), Size(0): %d (%v), %d (%v); want 4 and 2", last, err1, first, err2)
	}
	if n, err := x.Size(3); err == nil || !strings.Contains(err.Error(), "dim 3") {
		t.Errorf("Size(3) of a 3-d tensor: %d, error %v; want an error naming dim 3", n, err)
	}
}

// shapeOf returns x's shape, failing the test when x carries an error.
func shapeOf(t testing.TB, x *torch.Tensor) []int64 {
	t.Helper()
	s, err := x.Shape()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// dimOf returns x's number of dimensions, failing the test when x carries an error.
func dimOf(t testing.TB, x *torch.Tensor) int {
	t.Helper()
	n, err := x.Dim()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

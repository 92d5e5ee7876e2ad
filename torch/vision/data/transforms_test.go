package data

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"modelstitch/torch"
)

// distinctImages returns n×c×h×w values 1, 2, 3, ... (all distinct and non-zero).
func distinctImages(n, c, h, w int) []float64 {
	v := make([]float64, n*c*h*w)
	for i := range v {
		v[i] = float64(i + 1)
	}
	return v
}

// shifted returns image x (c×h×w) cropped at offset (dy, dx) of its zero-padded copy.
func shifted(x []float64, c, h, w, pad, dy, dx int) []float64 {
	out := make([]float64, c*h*w)
	for ch := range c {
		for i := range h {
			for j := range w {
				si, sj := i+dy-pad, j+dx-pad
				if si >= 0 && si < h && sj >= 0 && sj < w {
					out[(ch*h+i)*w+j] = x[(ch*h+si)*w+sj]
				}
			}
		}
	}
	return out
}

func TestRandomCropPad(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	const n, c, h, w, pad = 32, 2, 7, 9, 3
	in := distinctImages(n, c, h, w)
	x := fromValues(s, in, n, c, h, w)
	out := values(t, RandomCropPad{Pad: pad}.Apply(x, gen(t, 1)))
	offsets := map[[2]int]bool{}
	il := c * h * w
	for k := range n {
		img, got := in[k*il:(k+1)*il], out[k*il:(k+1)*il]
		found := false
		for dy := 0; dy <= 2*pad && !found; dy++ {
			for dx := 0; dx <= 2*pad && !found; dx++ {
				if slices.Equal(got, shifted(img, c, h, w, pad, dy, dx)) {
					found = true
					offsets[[2]int{dy, dx}] = true
				}
			}
		}
		if !found {
			t.Fatalf("sample %d is not an exact shifted copy of its input: %v", k, got)
		}
	}
	if len(offsets) < 5 {
		t.Errorf("only %d distinct offsets in %d samples", len(offsets), n)
	}
	// Every offset, including the extremes, can occur.
	g := gen(t, 2)
	big := fromValues(s, distinctImages(400, 1, 3, 3), 400, 1, 3, 3)
	out = values(t, RandomCropPad{Pad: 1}.Apply(big, g))
	seen := map[[2]int]bool{}
	for k := range 400 {
		for dy := range 3 {
			for dx := range 3 {
				if slices.Equal(out[k*9:(k+1)*9], shifted(distinctImages(400, 1, 3, 3)[k*9:(k+1)*9], 1, 3, 3, 1, dy, dx)) {
					seen[[2]int{dy, dx}] = true
				}
			}
		}
	}
	if len(seen) != 9 {
		t.Errorf("offsets seen %v, want all 9", seen)
	}
}

func TestHorizontalFlip(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	const n, c, h, w = 64, 3, 4, 5
	in := distinctImages(n, c, h, w)
	x := fromValues(s, in, n, c, h, w)
	flipped := values(t, x.Flip(3))
	il := c * h * w
	for _, p := range []float64{0, 0.5, 1} {
		out := values(t, HorizontalFlip{P: p}.Apply(x, gen(t, 3)))
		nf := 0
		for k := range n {
			got := out[k*il : (k+1)*il]
			switch {
			case slices.Equal(got, flipped[k*il:(k+1)*il]):
				nf++
			case !slices.Equal(got, in[k*il:(k+1)*il]):
				t.Fatalf("p=%v: sample %d is neither itself nor its mirror image", p, k)
			}
		}
		switch {
		case p == 0 && nf != 0, p == 1 && nf != n, p == 0.5 && (nf < 16 || nf > 48):
			t.Errorf("p=%v: %d of %d samples flipped", p, nf, n)
		}
	}
	// The mirror image is exact: pixel (i, j) moves to (i, w-1-j).
	if flipped[0] != in[w-1] || flipped[w-1] != in[0] {
		t.Fatal("Flip(3) is not a horizontal mirror")
	}
}

func TestRandomResizedCrop(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	const n, c, h, w = 8, 3, 28, 28
	in := randomImages(n, c, h, w, 1)
	x := fromValues(s, in, n, c, h, w)
	// Scale 1 and ratio 1 on a square image: the identity.
	out := values(t, RandomResizedCrop{Scale: [2]float64{1, 1}, Ratio: [2]float64{1, 1}}.Apply(x, gen(t, 1)))
	if d := maxAbsDiff(out, in); d > 1e-5 {
		t.Errorf("scale (1,1) ratio (1,1) differs from the identity by %g", d)
	}
	// A quarter of the area at ratio 1 on 8×8: a 4×4 box at an integer offset,
	// upsampled ×2 exactly as F.interpolate(bilinear, align_corners=False) does.
	const m, side, box = 16, 8, 4
	small := fromValues(s, randomImages(m, 1, side, side, 2), m, 1, side, side)
	out = values(t, RandomResizedCrop{Scale: [2]float64{0.25, 0.25}, Ratio: [2]float64{1, 1}}.Apply(small, gen(t, 2)))
	refs := map[[2]int][]float64{}
	for i := 0; i <= side-box; i++ {
		for j := 0; j <= side-box; j++ {
			crop := small.Narrow(2, int64(i), box).Narrow(3, int64(j), box)
			refs[[2]int{i, j}] = values(t, torch.Interpolate(crop, torch.P(side), "bilinear", false))
		}
	}
	boxes := map[[2]int]bool{}
	for k := range m {
		got := out[k*side*side : (k+1)*side*side]
		best, where := math.Inf(1), [2]int{}
		for off, ref := range refs {
			if d := maxAbsDiff(got, ref[k*side*side:(k+1)*side*side]); d < best {
				best, where = d, off
			}
		}
		if best > 1e-5 {
			t.Fatalf("sample %d matches no resized 4×4 crop (best %v off by %g)", k, where, best)
		}
		boxes[where] = true
	}
	if len(boxes) < 4 {
		t.Errorf("only %d distinct boxes in %d samples", len(boxes), m)
	}
	// Default parameters: same shape, values within the input's range.
	y := RandomResizedCrop{}.Apply(x, gen(t, 3))
	if !slices.Equal(shapeOf(t, y), shapeOf(t, x)) {
		t.Fatalf("shape %v", shapeOf(t, y))
	}
	for _, v := range values(t, y) {
		if v < -1e-6 || v > 1+1e-6 {
			t.Fatalf("value %v outside [0, 1]", v)
		}
	}
	// A non-square image falls back to a box inside it.
	wide := fromValues(s, randomImages(4, 1, 6, 20, 3), 4, 1, 6, 20)
	if err := (RandomResizedCrop{Scale: [2]float64{1, 1}, Ratio: [2]float64{1, 1}}).Apply(wide, gen(t, 4)).Err(); err != nil {
		t.Fatal(err)
	}
}

// Go references of torchvision's colour adjustments, per pixel in float64.

func refGray(img []float64, hw int) []float64 {
	g := make([]float64, hw)
	for p := range hw {
		g[p] = lumaR*img[p] + lumaG*img[hw+p] + lumaB*img[2*hw+p]
	}
	return g
}

func clamp01(v float64) float64 { return min(max(v, 0), 1) }

func refBrightness(img []float64, hw int, f float64) []float64 {
	out := make([]float64, len(img))
	for i, v := range img {
		out[i] = clamp01(f * v)
	}
	return out
}

func refContrast(img []float64, hw int, f float64) []float64 {
	mean := 0.0
	for _, v := range refGray(img, hw) {
		mean += v
	}
	mean /= float64(hw)
	out := make([]float64, len(img))
	for i, v := range img {
		out[i] = clamp01(f*v + (1-f)*mean)
	}
	return out
}

func refSaturation(img []float64, hw int, f float64) []float64 {
	g := refGray(img, hw)
	out := make([]float64, len(img))
	for i, v := range img {
		out[i] = clamp01(f*v + (1-f)*g[i%hw])
	}
	return out
}

func refHue(img []float64, hw int, f float64) []float64 {
	out := make([]float64, len(img))
	for p := range hw {
		r, g, b := img[p], img[hw+p], img[2*hw+p]
		maxc, minc := max(r, g, b), min(r, g, b)
		v := maxc
		var h, s float64
		if maxc != minc {
			cr := maxc - minc
			s = cr / maxc
			rc, gc, bc := (maxc-r)/cr, (maxc-g)/cr, (maxc-b)/cr
			switch {
			case maxc == r:
				h = bc - gc
			case maxc == g:
				h = 2 + rc - bc
			default:
				h = 4 + gc - rc
			}
			h = math.Mod(h/6+1, 1)
		}
		h = math.Mod(math.Mod(h+f, 1)+1, 1)
		i := math.Floor(h * 6)
		fr := h*6 - i
		pp := clamp01(v * (1 - s))
		q := clamp01(v * (1 - s*fr))
		t := clamp01(v * (1 - s*(1-fr)))
		var rgb [3]float64
		switch int(i) % 6 {
		case 0:
			rgb = [3]float64{v, t, pp}
		case 1:
			rgb = [3]float64{q, v, pp}
		case 2:
			rgb = [3]float64{pp, v, t}
		case 3:
			rgb = [3]float64{pp, q, v}
		case 4:
			rgb = [3]float64{t, pp, v}
		case 5:
			rgb = [3]float64{v, pp, q}
		}
		out[p], out[hw+p], out[2*hw+p] = rgb[0], rgb[1], rgb[2]
	}
	return out
}

func TestColorAdjustments(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	const n, c, h, w = 6, 3, 5, 7
	hw, il := h*w, c*h*w
	in := randomImages(n, c, h, w, 4)
	// Some gray pixels and saturated pixels, where HSV has special cases.
	in[0], in[hw], in[2*hw] = 0.3, 0.3, 0.3
	in[1], in[hw+1], in[2*hw+1] = 1, 0, 0
	in[2], in[hw+2], in[2*hw+2] = 0, 0, 0
	x := fromValues(s, in, n, c, h, w)
	for _, tc := range []struct {
		name    string
		apply   func(x, f *torch.Tensor) *torch.Tensor
		ref     func([]float64, int, float64) []float64
		factors []float64
	}{
		{"brightness", adjustBrightness, refBrightness, []float64{0.6, 1, 1.4, 0, 2, 1.2}},
		{"contrast", adjustContrast, refContrast, []float64{0.6, 1, 1.4, 0, 2, 1.2}},
		{"saturation", adjustSaturation, refSaturation, []float64{0.6, 1, 1.4, 0, 2, 1.2}},
		{"hue", adjustHue, refHue, []float64{0.1, -0.1, 0, 0.5, -0.5, 0.33}},
	} {
		f := fromValues(s, tc.factors, n, 1, 1, 1)
		out := values(t, tc.apply(x, f))
		for k := range n {
			want := tc.ref(in[k*il:(k+1)*il], hw, tc.factors[k])
			if d := maxAbsDiff(out[k*il:(k+1)*il], want); d > 2e-6 {
				t.Errorf("%s factor %v: off by %g from torchvision's formula", tc.name, tc.factors[k], d)
			}
		}
	}
}

func TestColorJitter(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	const n, c, h, w = 32, 3, 6, 6
	il := c * h * w
	in := randomImages(n, c, h, w, 5)
	for i := range in {
		in[i] = 0.1 + 0.6*in[i] // keep brightness changes away from clamping
	}
	x := fromValues(s, in, n, c, h, w)
	// Brightness only: each sample is scaled by one factor in [0.5, 1.5].
	out := values(t, ColorJitter{Brightness: 0.5, P: 1}.Apply(x, gen(t, 1)))
	var factors []float64
	for k := range n {
		f := out[k*il] / in[k*il]
		if f < 0.5-1e-6 || f > 1.5+1e-6 {
			t.Fatalf("sample %d scaled by %v", k, f)
		}
		for i := k * il; i < (k+1)*il; i++ {
			if math.Abs(out[i]-clamp01(f*in[i])) > 1e-5 {
				t.Fatalf("sample %d is not scaled uniformly", k)
			}
		}
		factors = append(factors, f)
	}
	slices.Sort(factors)
	if factors[n-1]-factors[0] < 0.3 {
		t.Errorf("factors %v barely vary", factors)
	}
	// P 0: unchanged. P 0.5: about half the samples change.
	in = in32(in)
	if d := maxAbsDiff(values(t, ColorJitter{Brightness: 0.4, Contrast: 0.4, Saturation: 0.4, Hue: 0.1}.Apply(x, gen(t, 2))), in); d != 0 {
		t.Errorf("p=0 changed the input by %g", d)
	}
	out = values(t, ColorJitter{Brightness: 0.4, Contrast: 0.4, Saturation: 0.4, Hue: 0.1, P: 0.5}.Apply(x, gen(t, 3)))
	changed := 0
	for k := range n {
		if !slices.Equal(out[k*il:(k+1)*il], in[k*il:(k+1)*il]) {
			changed++
		}
	}
	if changed < 6 || changed > 26 {
		t.Errorf("p=0.5 changed %d of %d samples", changed, n)
	}
	for _, v := range out {
		if v < 0 || v > 1 {
			t.Fatalf("value %v outside [0, 1]", v)
		}
	}
	// The order of the adjustments is drawn per sample: every permutation occurs.
	o, err := begin("test", fromValues(s, make([]float64, 2400), 2400, 1, 1, 1), gen(t, 4))
	if err != nil {
		t.Fatal(err)
	}
	order, err := o.randomOrder(4).Int64s()
	o.s.Close()
	if err != nil {
		t.Fatal(err)
	}
	perms := map[[4]int64]int{}
	for k := range 2400 {
		var p [4]int64
		copy(p[:], order[4*k:4*k+4])
		if q := slices.Sorted(slices.Values(p[:])); !slices.Equal(q, []int64{0, 1, 2, 3}) {
			t.Fatalf("order %v is not a permutation", p)
		}
		perms[p]++
	}
	if len(perms) != 24 {
		t.Errorf("%d of the 24 orders occur", len(perms))
	}
	for p, c := range perms {
		if c < 50 || c > 150 {
			t.Errorf("order %v drawn %d times of 2400", p, c)
		}
	}
	// One channel: brightness and contrast apply, saturation and hue are ignored.
	gray1 := fromValues(s, randomImages(4, 1, h, w, 6), 4, 1, h, w)
	if err := (ColorJitter{Brightness: 0.4, Contrast: 0.4, Saturation: 0.4, Hue: 0.1, P: 1}).Apply(gray1, gen(t, 5)).Err(); err != nil {
		t.Fatal(err)
	}
	two := fromValues(s, randomImages(1, 2, 2, 2, 7), 1, 2, 2, 2)
	if err := (ColorJitter{Brightness: 0.4, P: 1}).Apply(two, gen(t, 6)).Err(); err == nil || !strings.Contains(err.Error(), "channels") {
		t.Errorf("2 channels: %v", err)
	}
}

func TestRandomGrayscale(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	const n, h, w = 16, 4, 4
	hw, il := h*w, 3*h*w
	in := randomImages(n, 3, h, w, 8)
	x := fromValues(s, in, n, 3, h, w)
	out := values(t, RandomGrayscale{P: 1}.Apply(x, gen(t, 1)))
	for k := range n {
		g := refGray(in[k*il:(k+1)*il], hw)
		for ch := range 3 {
			if d := maxAbsDiff(out[k*il+ch*hw:k*il+(ch+1)*hw], g); d > 1e-6 {
				t.Fatalf("sample %d channel %d is off the gray image by %g", k, ch, d)
			}
		}
	}
	if d := maxAbsDiff(values(t, RandomGrayscale{P: 0}.Apply(x, gen(t, 2))), in); d != 0 {
		t.Errorf("p=0 changed the input by %g", d)
	}
	out = values(t, RandomGrayscale{P: 0.5}.Apply(x, gen(t, 3)))
	grayed := 0
	for k := range n {
		o := out[k*il : (k+1)*il]
		switch {
		case slices.Equal(o[:hw], o[hw:2*hw]) && slices.Equal(o[:hw], o[2*hw:]):
			grayed++
		case !slices.Equal(o, in[k*il:(k+1)*il]):
			t.Fatalf("sample %d neither gray nor unchanged", k)
		}
	}
	if grayed == 0 || grayed == n {
		t.Errorf("p=0.5 grayed %d of %d", grayed, n)
	}
	// One channel is left alone.
	one := fromValues(s, in[:hw], 1, 1, h, w)
	if d := maxAbsDiff(values(t, RandomGrayscale{P: 1}.Apply(one, gen(t, 4))), in[:hw]); d != 0 {
		t.Errorf("one-channel input changed by %g", d)
	}
}

func TestGaussianNoise(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	x := s.Track(torch.Full([]int64{64, 1, 16, 16}, 0.5))
	y := GaussianNoise{Std: 0.1}.Apply(x, gen(t, 1))
	d := y.Sub(x)
	m, _ := d.Mean().Item()
	sd, _ := d.Std(nil, false, false).Item()
	if math.Abs(m) > 0.005 || math.Abs(sd-0.1) > 0.005 {
		t.Errorf("noise mean %v std %v, want 0 and 0.1", m, sd)
	}
}

func TestRandomErasing(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	const n, c, h, w = 64, 2, 20, 24
	x := s.Track(torch.Ones([]int64{n, c, h, w}))
	scale := [2]float64{0.05, 0.2}
	out := values(t, RandomErasing{P: 1, Scale: scale, Value: 0.25}.Apply(x, gen(t, 1)))
	erasedSamples := 0
	for k := range n {
		img := out[k*c*h*w : (k+1)*c*h*w]
		// The erased pixels form one rectangle, the same in every channel.
		top, left, bottom, right, count := h, w, -1, -1, 0
		for i := range h {
			for j := range w {
				v := img[i*w+j]
				for ch := 1; ch < c; ch++ {
					if img[(ch*h+i)*w+j] != v {
						t.Fatalf("sample %d: channels erased differently", k)
					}
				}
				if v == 1 {
					continue
				}
				if v != 0.25 {
					t.Fatalf("sample %d: value %v", k, v)
				}
				top, left, bottom, right = min(top, i), min(left, j), max(bottom, i), max(right, j)
				count++
			}
		}
		if count == 0 {
			continue
		}
		erasedSamples++
		if count != (bottom-top+1)*(right-left+1) {
			t.Fatalf("sample %d: %d erased pixels do not form a rectangle", k, count)
		}
		// Rounding the sides can move the area a little outside the scale range.
		frac := float64(count) / (h * w)
		if frac < scale[0]*0.5 || frac > scale[1]*1.5 {
			t.Errorf("sample %d: erased %.3f of the image, scale %v", k, frac, scale)
		}
	}
	if erasedSamples < n*9/10 {
		t.Errorf("p=1 erased in only %d of %d samples", erasedSamples, n)
	}
	if d := maxAbsDiff(values(t, RandomErasing{P: 0}.Apply(x, gen(t, 2))), values(t, x)); d != 0 {
		t.Errorf("p=0 changed the input by %g", d)
	}
}

// allTransforms lists one instance of every transform, for the generic tests.
func allTransforms() map[string]Transform {
	return map[string]Transform{
		"crop":      RandomCropPad{Pad: 2},
		"flip":      HorizontalFlip{P: 0.5},
		"resized":   RandomResizedCrop{Scale: [2]float64{0.2, 1}},
		"jitter":    ColorJitter{Brightness: 0.4, Contrast: 0.4, Saturation: 0.4, Hue: 0.1, P: 0.8},
		"grayscale": RandomGrayscale{P: 0.5},
		"noise":     GaussianNoise{Std: 0.1},
		"erasing":   RandomErasing{P: 0.5},
		"compose":   Compose(RandomCropPad{Pad: 1}, HorizontalFlip{P: 0.5}, nil, GaussianNoise{Std: 0.1}),
		"simclr":    SimCLRAugment(synthetic(1, 3, 12, 12)),
		"simclr1":   SimCLRAugment(synthetic(1, 1, 12, 12)),
		"standard":  StandardAugment(synthetic(1, 3, 12, 12)),
		"normed":    OnNormalized(RandomErasing{P: 0.5}, []float64{0.5, 0.4, 0.3}, []float64{0.2, 0.2, 0.2}),
	}
}

func TestTransformsDeterministicAndScoped(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	in := randomImages(16, 3, 12, 12, 9)
	for name, tr := range allTransforms() {
		c := int64(3)
		if name == "simclr1" {
			c = 1
		}
		x := fromValues(s, in[:16*int(c)*144], 16, c, 12, 12)
		a := values(t, tr.Apply(x, gen(t, 42)))
		b := values(t, tr.Apply(x, gen(t, 42)))
		other := values(t, tr.Apply(x, gen(t, 43)))
		if !slices.Equal(a, b) {
			t.Errorf("%s: the same seed gave different results", name)
		}
		if slices.Equal(a, other) {
			t.Errorf("%s: seeds 42 and 43 gave the same result", name)
		}
		if slices.Equal(a, in[:len(a)]) {
			t.Errorf("%s: did nothing", name)
		}
		// The result joins x's scope; nothing else is left alive.
		before := torch.LiveTensors()
		y := tr.Apply(x, gen(t, 1))
		if y.Scope() != s || torch.LiveTensors() != before+1 {
			t.Errorf("%s: result in scope %p (want %p); %d new live tensors, want 1", name, y.Scope(), s, torch.LiveTensors()-before)
		}
		if !slices.Equal(shapeOf(t, y), shapeOf(t, x)) || y.DType() != torch.Float32 {
			t.Errorf("%s: result %v", name, y)
		}
		// An unscoped input gives an unscoped result, also with nothing else left.
		free := torch.FromSlice(make([]float32, 2*c*144), 2, c, 12, 12)
		before = torch.LiveTensors()
		z := tr.Apply(free, gen(t, 1))
		if z.Err() != nil || z.Scope() != nil || torch.LiveTensors() != before+1 {
			t.Errorf("%s on an unscoped input: %v, scope %p, %d new live tensors", name, z.Err(), z.Scope(), torch.LiveTensors()-before)
		}
		torch.FreeAll(z, free)
	}
}

func TestTransformErrors(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	x := s.Track(torch.Zeros([]int64{2, 3, 8, 8}))
	g := gen(t, 1)
	for _, tc := range []struct {
		t    Transform
		want string
	}{
		{RandomCropPad{Pad: -1}, "pad -1"},
		{HorizontalFlip{P: 1.5}, "probability 1.5"},
		{RandomResizedCrop{Scale: [2]float64{0.5, 0.2}}, "scale"},
		{RandomResizedCrop{Ratio: [2]float64{-1, 1}}, "ratio"},
		{ColorJitter{Brightness: -0.1, P: 1}, "brightness"},
		{ColorJitter{Hue: 0.6, P: 1}, "hue 0.6"},
		{RandomGrayscale{P: -0.1}, "probability -0.1"},
		{GaussianNoise{Std: math.NaN()}, "std NaN"},
		{RandomErasing{P: 0.5, Scale: [2]float64{0.5, 2}}, "scale"},
		{OnNormalized(HorizontalFlip{P: 0.5}, []float64{0.5}, []float64{1}), "1 entries for 3 channels"},
		{Compose(HorizontalFlip{P: 0.5}, RandomCropPad{Pad: -4}), "pad -4"},
	} {
		err := tc.t.Apply(x, g).Err()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one mentioning %q", tc.t, err, tc.want)
		}
	}
	// Bad inputs: wrong rank, integer dtype, an error tensor.
	flat := s.Track(torch.Zeros([]int64{3, 8, 8}))
	if err := (HorizontalFlip{P: 0.5}).Apply(flat, g).Err(); err == nil || !strings.Contains(err.Error(), "[N,C,H,W]") {
		t.Errorf("3-D input: %v", err)
	}
	ints := s.Track(torch.Zeros([]int64{1, 1, 2, 2}, torch.Options{DType: torch.Uint8}))
	if err := (GaussianNoise{Std: 1}).Apply(ints, g).Err(); err == nil || !strings.Contains(err.Error(), "floating-point") {
		t.Errorf("uint8 input: %v", err)
	}
	bad := torch.ErrTensor(fmt.Errorf("earlier failure"))
	if err := Compose(RandomCropPad{Pad: 1}).Apply(bad, g).Err(); err == nil || !strings.Contains(err.Error(), "earlier failure") {
		t.Errorf("error input: %v", err)
	}
}

func TestTwoViewsAndOnNormalized(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	in := randomImages(8, 3, 10, 10, 11)
	x := fromValues(s, in, 8, 3, 10, 10)
	v1, v2 := TwoViews(x, SimCLRAugment(synthetic(1, 3, 10, 10)), gen(t, 1))
	if slices.Equal(values(t, v1), values(t, v2)) || v1.Scope() != s || v2.Scope() != s {
		t.Error("two views are identical or unscoped")
	}
	a, b := TwoViews(x, nil, nil)
	if !slices.Equal(values(t, a), in32(in)) || !slices.Equal(values(t, b), in32(in)) {
		t.Error("nil transform changed the views")
	}
	// A flip commutes with normalisation: flipping normalised data through OnNormalized
	// equals normalising the flipped data.
	mean, std := []float64{0.4, 0.5, 0.6}, []float64{0.2, 0.25, 0.3}
	m := fromValues(s, mean, 1, 3, 1, 1)
	sd := fromValues(s, std, 1, 3, 1, 1)
	normed := x.Sub(m).Div(sd)
	got := values(t, OnNormalized(HorizontalFlip{P: 1}, mean, std).Apply(normed, gen(t, 2)))
	want := values(t, x.Flip(3).Sub(m).Div(sd))
	if d := maxAbsDiff(got, want); d > 1e-5 {
		t.Errorf("OnNormalized flip off by %g", d)
	}
	// Erasing to the mean through OnNormalized fills with zeros in normalised units.
	got = values(t, OnNormalized(RandomErasing{P: 1, Value: 0.5}, []float64{0.5, 0.5, 0.5}, std).Apply(normed, gen(t, 3)))
	zeros := 0
	for _, v := range got {
		if math.Abs(v) < 1e-6 {
			zeros++
		}
	}
	if zeros == 0 {
		t.Error("no erased pixels")
	}
}

// in32 rounds values to float32, as fromValues stores them.
func in32(v []float64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(float32(x))
	}
	return out
}

func TestPresets(t *testing.T) {
	for _, tc := range []struct {
		name    string
		c, side int
		want    []string
	}{
		{"fashion-mnist", 1, 28, []string{"RandomCropPad(pad=2)", "HorizontalFlip"}},
		{"mnist", 1, 28, []string{"RandomCropPad(pad=2)"}},
		{"cifar10", 3, 32, []string{"RandomCropPad(pad=4)", "HorizontalFlip"}},
		{"folder:x", 3, 224, []string{"RandomResizedCrop(scale=0.08-1", "HorizontalFlip"}},
	} {
		ds := synthetic(1, tc.c, tc.side, tc.side)
		ds.Name = tc.name
		got := fmt.Sprint(StandardAugment(ds))
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("StandardAugment(%s) = %s, want %s", tc.name, got, w)
			}
		}
		if tc.name == "mnist" && strings.Contains(got, "Flip") {
			t.Errorf("StandardAugment(mnist) flips digits: %s", got)
		}
	}
	cifar := synthetic(1, 3, 32, 32)
	if got := fmt.Sprint(SimCLRAugment(cifar)); !strings.Contains(got, "scale=0.2-1") || !strings.Contains(got, "ColorJitter(b=0.4, c=0.4, s=0.4, h=0.1, p=0.8)") || !strings.Contains(got, "RandomGrayscale(p=0.2)") {
		t.Errorf("SimCLRAugment(cifar) = %s", got)
	}
	big := synthetic(1, 3, 96, 96)
	if got := fmt.Sprint(SimCLRAugment(big)); !strings.Contains(got, "scale=0.08-1") {
		t.Errorf("SimCLRAugment(96px) = %s", got)
	}
	fm := synthetic(1, 1, 28, 28)
	if got := fmt.Sprint(SimCLRAugment(fm)); !strings.Contains(got, "GaussianNoise") || !strings.Contains(got, "RandomErasing") || strings.Contains(got, "ColorJitter") {
		t.Errorf("SimCLRAugment(grayscale) = %s", got)
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

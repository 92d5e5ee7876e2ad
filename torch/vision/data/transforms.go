package data

import (
	"fmt"
	"math"
	"strings"

	"modelstitch/torch"
)

// Transform is a random augmentation of a whole batch, done with a handful of tensor
// operations per batch (no per-sample Go loops over pixels).
//
// Apply takes x, a float [N,C,H,W] tensor on any device, and returns a new tensor of
// the same shape, dtype and device. Per-sample random parameters are drawn as tensors
// from g, which must live on x's device (nil means libtorch's global generator). The
// same generator state gives the same result. Apply does not modify x. The result
// joins x's scope, if x has one; intermediate tensors are freed before Apply returns.
// Errors (an invalid parameter, a bad input) are carried by the returned tensor, as
// everywhere in package torch.
//
// The transforms of this package expect pixel values in [0, 1] (see [Config.Augment]);
// use [OnNormalized] to apply one to normalised data.
type Transform interface {
	Apply(x *torch.Tensor, g *torch.Generator) *torch.Tensor
}

// Gray-level weights of rgb_to_grayscale in torchvision (ITU-R 601-2 luma, as rounded there).
const (
	lumaR = 0.2989
	lumaG = 0.587
	lumaB = 0.114
)

// opScope holds the state of one Apply: a private scope for intermediates, a handle
// to the input inside it, the input's sizes, and where the result goes.
type opScope struct {
	name       string
	s          *torch.Scope
	x          *torch.Tensor
	n, c, h, w int64
	dt         torch.DType
	dev        torch.Device
	g          *torch.Generator
	home       *torch.Scope
}

// begin checks x and opens the scope of one Apply.
func begin(name string, x *torch.Tensor, g *torch.Generator) (*opScope, error) {
	if err := x.Err(); err != nil {
		return nil, err
	}
	shape, err := x.Shape()
	if err != nil {
		return nil, err
	}
	if len(shape) != 4 {
		return nil, fmt.Errorf("data: %s: want an [N,C,H,W] tensor, got shape %v", name, shape)
	}
	dt := x.DType()
	if !dt.IsFloat() {
		return nil, fmt.Errorf("data: %s: want a floating-point tensor, got %v", name, dt)
	}
	o := &opScope{name: name, s: torch.NewScope(), n: shape[0], c: shape[1], h: shape[2], w: shape[3],
		dt: dt, dev: x.Device(), g: g, home: x.Scope()}
	o.x = o.s.Track(x.Ref())
	return o, nil
}

// finish takes the result out of the private scope, puts it in the input's scope and
// frees everything else.
func (o *opScope) finish(t *torch.Tensor) *torch.Tensor {
	defer o.s.Close()
	if err := t.Err(); err != nil {
		return torch.ErrTensor(fmt.Errorf("data: %s: %w", o.name, err))
	}
	o.s.Keep(t)
	if o.home != nil {
		o.home.Track(t)
	}
	return t
}

// params returns options for float64 parameter tensors drawn from the generator.
func (o *opScope) params() torch.Options {
	return torch.Options{DType: torch.Float64, Device: o.dev, Generator: o.g}
}

// uniform returns float64 values drawn uniformly from [lo, hi).
func (o *opScope) uniform(lo, hi float64, shape ...int64) *torch.Tensor {
	u := o.s.Track(torch.Rand(shape, o.params()))
	if lo == 0 && hi == 1 {
		return u
	}
	return u.MulScalar(hi - lo).AddScalar(lo)
}

// full returns a tensor of the given shape and dtype filled with v, on the device.
func (o *opScope) full(shape []int64, v float64, dt torch.DType) *torch.Tensor {
	return o.s.Track(torch.Full(shape, v, torch.Options{DType: dt, Device: o.dev}))
}

// arange returns 0..n-1 with dtype dt on the device.
func (o *opScope) arange(n int64, dt torch.DType) *torch.Tensor {
	return o.s.Track(torch.Arange(0, float64(n), 1, torch.Options{DType: dt, Device: o.dev}))
}

// fail returns an error tensor for a bad parameter.
func fail(name, format string, args ...any) *torch.Tensor {
	return torch.ErrTensor(fmt.Errorf("data: %s: %s", name, fmt.Sprintf(format, args...)))
}

// beginEach checks that p is a probability and starts operation name on x,
// for the transforms that change each sample with probability p.
func beginEach(name string, p float64, x *torch.Tensor, g *torch.Generator) (*opScope, error) {
	if !(p >= 0 && p <= 1) {
		return nil, fmt.Errorf("data: %s: probability %v, want [0, 1]", name, p)
	}
	return begin(name, x, g)
}

// chosen returns an [N,1,1,1] mask that picks each sample with probability p.
func (o *opScope) chosen(p float64) *torch.Tensor { return o.uniform(0, 1, o.n, 1, 1, 1).LtScalar(p) }

// identity returns a new handle to x (no copy), in x's scope.
func identity(x *torch.Tensor) *torch.Tensor { return x.Ref() }

// RandomCropPad pads each image with Pad zero pixels on every side and crops a random
// H×W window from it, with an offset drawn for each sample (torchvision's
// RandomCrop(size, padding=Pad)). The crop is exact: every output is an integer shift
// of its input, with zeros where the window leaves the image.
type RandomCropPad struct {
	// Pad is the number of zero pixels added on each side; 0 makes the crop the identity.
	Pad int
}

// Apply crops every sample at its own random offset.
func (t RandomCropPad) Apply(x *torch.Tensor, g *torch.Generator) *torch.Tensor {
	const name = "random crop"
	if t.Pad < 0 {
		return fail(name, "pad %d, want >= 0", t.Pad)
	}
	if t.Pad == 0 {
		return identity(x)
	}
	o, err := begin(name, x, g)
	if err != nil {
		return torch.ErrTensor(err)
	}
	p := int64(t.Pad)
	n, c, h, w := o.n, o.c, o.h, o.w
	padded := o.x.Pad([]int64{p, p, p, p}, 0)
	opt := torch.Options{Device: o.dev, Generator: o.g}
	dy := o.s.Track(torch.RandInt(0, 2*p+1, []int64{n, 1}, opt))
	dx := o.s.Track(torch.RandInt(0, 2*p+1, []int64{n, 1}, opt))
	rows := dy.Add(o.arange(h, torch.Int64).View(1, h)) // [N,H]: source row of each output row
	cols := dx.Add(o.arange(w, torch.Int64).View(1, w)) // [N,W]
	out := padded.Gather(2, rows.View(n, 1, h, 1).Expand(n, c, h, w+2*p))
	out = out.Gather(3, cols.View(n, 1, 1, w).Expand(n, c, h, w))
	return o.finish(out)
}

// String describes the transform.
func (t RandomCropPad) String() string { return fmt.Sprintf("RandomCropPad(pad=%d)", t.Pad) }

// HorizontalFlip mirrors each sample left to right with probability P, drawn per sample.
type HorizontalFlip struct {
	// P is the probability of flipping a sample, in [0, 1].
	P float64
}

// Apply flips a random subset of the samples.
func (t HorizontalFlip) Apply(x *torch.Tensor, g *torch.Generator) *torch.Tensor {
	const name = "horizontal flip"
	o, err := beginEach(name, t.P, x, g)
	if err != nil {
		return torch.ErrTensor(err)
	}
	return o.finish(torch.Where(o.chosen(t.P), o.x.Flip(3), o.x))
}

// String describes the transform.
func (t HorizontalFlip) String() string { return fmt.Sprintf("HorizontalFlip(p=%g)", t.P) }

// RandomResizedCrop crops a random box from each sample and resizes it back to the
// input's H×W with bilinear interpolation (torchvision's RandomResizedCrop with the
// output size equal to the input size). Boxes are drawn per sample as torchvision
// does: up to 10 tries of an area fraction from Scale and a log-uniform aspect ratio
// from Ratio, the first that fits being used, else a centre crop of the whole image
// with its aspect ratio clamped to Ratio. Resizing uses AffineGrid and GridSample
// (align_corners false, border padding), which equals F.interpolate's bilinear resize
// of the box; since the box is never larger than the output, no antialiasing is needed.
type RandomResizedCrop struct {
	// Scale bounds the box's area as a fraction of the image's; zero means (0.08, 1).
	Scale [2]float64
	// Ratio bounds the box's aspect ratio (width/height); zero means (3/4, 4/3).
	Ratio [2]float64
}

// withDefaults fills in the zero fields.
func (t RandomResizedCrop) withDefaults() RandomResizedCrop {
	if t.Scale == [2]float64{} {
		t.Scale = [2]float64{0.08, 1}
	}
	if t.Ratio == [2]float64{} {
		t.Ratio = [2]float64{3.0 / 4, 4.0 / 3}
	}
	return t
}

// Apply crops and resizes every sample with its own random box.
func (t RandomResizedCrop) Apply(x *torch.Tensor, g *torch.Generator) *torch.Tensor {
	const name = "random resized crop"
	t = t.withDefaults()
	if !(t.Scale[0] > 0 && t.Scale[0] <= t.Scale[1] && t.Scale[1] <= 1) {
		return fail(name, "scale %v, want 0 < min <= max <= 1", t.Scale)
	}
	if !(t.Ratio[0] > 0 && t.Ratio[0] <= t.Ratio[1] && !math.IsInf(t.Ratio[1], 0)) {
		return fail(name, "ratio %v, want 0 < min <= max", t.Ratio)
	}
	o, err := begin(name, x, g)
	if err != nil {
		return torch.ErrTensor(err)
	}
	n, h, w := o.n, float64(o.h), float64(o.w)
	const tries = 10
	area := o.uniform(t.Scale[0]*h*w, t.Scale[1]*h*w, n, tries)
	aspect := o.uniform(math.Log(t.Ratio[0]), math.Log(t.Ratio[1]), n, tries).Exp()
	bw := area.Mul(aspect).Sqrt().Round() // box widths, [N,tries]
	bh := area.Div(aspect).Sqrt().Round()
	fits := bw.GtScalar(0).LogicalAnd(bw.LeScalar(w)).LogicalAnd(bh.GtScalar(0)).LogicalAnd(bh.LeScalar(h)).To(torch.Float64)
	first := fits.Argmax(1, true)                         // [N,1]: the first try that fits
	none := fits.AmaxDims([]int64{1}, true).LtScalar(0.5) // [N,1]: no try fits
	fw, fh := fallbackBox(h, w, t.Ratio)
	bw = bw.Gather(1, first).MaskedFill(none, fw)
	bh = bh.Gather(1, first).MaskedFill(none, fh)
	// Top-left corner: uniform integer in [0, H-h] (centred for the fallback box).
	top := o.uniform(0, 1, n, 1).Mul(bh.RSubScalar(h + 1)).Floor().Minimum(bh.RSubScalar(h))
	left := o.uniform(0, 1, n, 1).Mul(bw.RSubScalar(w + 1)).Floor().Minimum(bw.RSubScalar(w))
	top = top.MaskedFill(none, math.Floor((h-fh)/2))
	left = left.MaskedFill(none, math.Floor((w-fw)/2))
	// Output pixel edges map onto box edges: u_in = (bw/W)·u_out + (2·left + bw)/W − 1.
	zero := o.full([]int64{n, 1}, 0, torch.Float64)
	sx := bw.DivScalar(w)
	tx := left.MulScalar(2).Add(bw).DivScalar(w).SubScalar(1)
	sy := bh.DivScalar(h)
	ty := top.MulScalar(2).Add(bh).DivScalar(h).SubScalar(1)
	theta := torch.Cat([]*torch.Tensor{sx, zero, tx, zero, sy, ty}, 1).View(n, 2, 3).To(o.dt)
	grid := torch.AffineGrid(theta, []int64{n, o.c, o.h, o.w}, false) // [N,H,W,2]: (x, y)
	// Keep samples inside the box's outermost pixel centres, as resizing the cropped
	// image does (F.interpolate clamps there), instead of reading pixels beside the box.
	gx := clampBetween(grid.Narrow(3, 0, 1), centre(left, w, o.dt), centre(left.Add(bw).SubScalar(1), w, o.dt))
	gy := clampBetween(grid.Narrow(3, 1, 1), centre(top, h, o.dt), centre(top.Add(bh).SubScalar(1), h, o.dt))
	grid = torch.Cat([]*torch.Tensor{gx, gy}, 3)
	return o.finish(torch.GridSample(o.x, grid, "bilinear", "border", false))
}

// centre returns the normalised coordinate (align_corners false) of pixel index p
// ([N,1], float64) along a side of length size, shaped [N,1,1,1] with dtype dt.
func centre(p *torch.Tensor, size float64, dt torch.DType) *torch.Tensor {
	return p.MulScalar(2).AddScalar(1).DivScalar(size).SubScalar(1).View(-1, 1, 1, 1).To(dt)
}

// clampBetween limits x to [lo, hi] elementwise, with broadcasting bounds.
func clampBetween(x, lo, hi *torch.Tensor) *torch.Tensor { return x.Maximum(lo).Minimum(hi) }

// fallbackBox returns torchvision's fallback crop size: the whole image, narrowed to
// the nearest aspect ratio inside ratio.
func fallbackBox(h, w float64, ratio [2]float64) (bw, bh float64) {
	switch in := w / h; {
	case in < ratio[0]:
		return w, math.Round(w / ratio[0])
	case in > ratio[1]:
		return math.Round(h * ratio[1]), h
	}
	return w, h
}

// String describes the transform.
func (t RandomResizedCrop) String() string {
	t = t.withDefaults()
	return fmt.Sprintf("RandomResizedCrop(scale=%g-%g, ratio=%.4g-%.4g)", t.Scale[0], t.Scale[1], t.Ratio[0], t.Ratio[1])
}

// ColorJitter randomly changes the brightness, contrast, saturation and hue of each
// sample, as torchvision's RandomApply([ColorJitter(b, c, s, h)], p=P): with
// probability P a sample gets factors drawn uniformly from [max(0, 1−b), 1+b] (and
// likewise c and s) and a hue shift from [−h, h], applied in a random order drawn per
// sample. The formulas are torchvision's for float images in [0, 1]:
//
//   - brightness f: clamp(f·x)
//   - contrast f: clamp(f·x + (1−f)·mean(gray(x))), the mean over the whole image
//   - saturation f: clamp(f·x + (1−f)·gray(x))
//   - hue f: RGB → HSV, h ← (h + f) mod 1, HSV → RGB (exact, not approximated;
//     computed in a shorter but equivalent form, see adjustHue)
//
// with gray = 0.2989 R + 0.587 G + 0.114 B and clamp to [0, 1]. For one-channel data
// brightness and contrast apply (gray(x) = x) while saturation and hue do nothing, as
// in torchvision. Other channel counts are an error.
//
// The random per-sample order costs one pass of every enabled adjustment per enabled
// adjustment (16 passes with all four on), in exchange for matching torchvision's
// distribution exactly.
type ColorJitter struct {
	// Brightness, Contrast and Saturation are the maximum relative changes (>= 0).
	Brightness, Contrast, Saturation float64
	// Hue is the maximum hue shift, in [0, 0.5] (a fraction of the colour circle).
	Hue float64
	// P is the probability of jittering a sample, in [0, 1].
	P float64
}

// jitterOp is one colour adjustment with its factor range and identity factor.
type jitterOp struct {
	lo, hi, id float64
	apply      func(x, f *torch.Tensor) *torch.Tensor
}

// Apply jitters a random subset of the samples.
func (t ColorJitter) Apply(x *torch.Tensor, g *torch.Generator) *torch.Tensor {
	const name = "color jitter"
	for _, v := range []float64{t.Brightness, t.Contrast, t.Saturation} {
		if !(v >= 0) || math.IsInf(v, 0) {
			return fail(name, "brightness, contrast and saturation must be finite and >= 0, got %v, %v, %v", t.Brightness, t.Contrast, t.Saturation)
		}
	}
	if !(t.Hue >= 0 && t.Hue <= 0.5) {
		return fail(name, "hue %v, want [0, 0.5]", t.Hue)
	}
	o, err := beginEach(name, t.P, x, g)
	if err != nil {
		return torch.ErrTensor(err)
	}
	if o.c != 1 && o.c != 3 {
		o.s.Close()
		return fail(name, "want 1 or 3 channels, got %d", o.c)
	}
	var ops []jitterOp
	if t.Brightness > 0 {
		ops = append(ops, jitterOp{max(0, 1-t.Brightness), 1 + t.Brightness, 1, adjustBrightness})
	}
	if t.Contrast > 0 {
		ops = append(ops, jitterOp{max(0, 1-t.Contrast), 1 + t.Contrast, 1, adjustContrast})
	}
	if o.c == 3 && t.Saturation > 0 {
		ops = append(ops, jitterOp{max(0, 1-t.Saturation), 1 + t.Saturation, 1, adjustSaturation})
	}
	if o.c == 3 && t.Hue > 0 {
		ops = append(ops, jitterOp{-t.Hue, t.Hue, 0, adjustHue})
	}
	if len(ops) == 0 || t.P == 0 {
		o.s.Close()
		return identity(x)
	}
	n, m := o.n, int64(len(ops))
	factors := make([]*torch.Tensor, m)
	ids := make([]*torch.Tensor, m)
	for i, op := range ops {
		factors[i] = o.uniform(op.lo, op.hi, n, 1, 1, 1).To(o.dt)
		ids[i] = o.full([]int64{n, 1, 1, 1}, op.id, o.dt)
	}
	order := o.randomOrder(m)
	y := o.x
	for k := range m {
		scheduled := order.Narrow(1, k, 1).View(n, 1, 1, 1)
		for i, op := range ops {
			// Each sample applies only the adjustment it scheduled at step k; the
			// others run with their identity factor.
			f := torch.Where(scheduled.EqScalar(float64(i)), factors[i], ids[i])
			y = op.apply(y, f)
		}
	}
	return o.finish(torch.Where(o.chosen(t.P), y, o.x))
}

// randomOrder returns a random permutation of 0..m-1 for each sample, [N,m] int64:
// the positions of m uniform keys sorted in decreasing order.
func (o *opScope) randomOrder(m int64) *torch.Tensor {
	_, order := o.uniform(0, 1, o.n, m).TopK(m, 1)
	return order
}

// String describes the transform.
func (t ColorJitter) String() string {
	return fmt.Sprintf("ColorJitter(b=%g, c=%g, s=%g, h=%g, p=%g)", t.Brightness, t.Contrast, t.Saturation, t.Hue, t.P)
}

// gray returns the luma of x as [N,1,H,W] (x itself for one channel).
func gray(x *torch.Tensor) *torch.Tensor {
	if c, err := x.Size(1); err != nil {
		return torch.ErrTensor(err)
	} else if c == 1 {
		return x
	}
	r, g, b := x.Narrow(1, 0, 1), x.Narrow(1, 1, 1), x.Narrow(1, 2, 1)
	return r.MulScalar(lumaR).Add(g.MulScalar(lumaG)).Add(b.MulScalar(lumaB))
}

// blend returns clamp(f·a + (1−f)·b) as torchvision's _blend.
func blend(a, b, f *torch.Tensor) *torch.Tensor {
	return a.Mul(f).Add(b.Mul(f.RSubScalar(1))).Clamp(0, 1)
}

// adjustBrightness scales x by f ([N,1,1,1]) and clamps.
func adjustBrightness(x, f *torch.Tensor) *torch.Tensor { return x.Mul(f).Clamp(0, 1) }

// adjustContrast blends x with the mean of its gray image.
func adjustContrast(x, f *torch.Tensor) *torch.Tensor {
	return blend(x, gray(x).MeanDims([]int64{1, 2, 3}, true), f)
}

// adjustSaturation blends x with its gray image.
func adjustSaturation(x, f *torch.Tensor) *torch.Tensor { return blend(x, gray(x), f) }

// adjustHue shifts the hue of RGB x by f (a fraction of the circle, [N,1,1,1]). It
// computes what torchvision's RGB → HSV → RGB round trip computes, in fewer
// operations: with M = max, m = min and C = M − m over the channels, the hue in
// sextants is h6 = (G−B)/C (red largest), (B−R)/C + 2 (green), or (R−G)/C + 4 (blue),
// and after the shift by 6f each channel is M − C·clamp(min(k, 4−k), 0, 1) with
// k = (h6 + n) mod 6, n = 5, 3, 1 for R, G, B (the piecewise-linear form of HSV → RGB,
// where V = M and V·S = C).
func adjustHue(x, f *torch.Tensor) *torch.Tensor {
	r, g, b := x.Narrow(1, 0, 1), x.Narrow(1, 1, 1), x.Narrow(1, 2, 1)
	maxc := x.AmaxDims([]int64{1}, true)
	minc := x.Neg().AmaxDims([]int64{1}, true).Neg()
	cr := maxc.Sub(minc)
	achromatic := cr.EqScalar(0)
	crd := cr.MaskedFill(achromatic, 1)
	isR, isG := maxc.Eq(r), maxc.Eq(g)
	num := torch.Where(isR, g.Sub(b), torch.Where(isG, b.Sub(r).Add(cr.MulScalar(2)), r.Sub(g).Add(cr.MulScalar(4))))
	h6 := num.Div(crd).Add(f.MulScalar(6))
	chans := make([]*torch.Tensor, 3)
	for c, n := range []float64{5, 3, 1} {
		k := h6.AddScalar(n).RemainderScalar(6)
		t := k.Minimum(k.RSubScalar(4)).Clamp(0, 1)
		chans[c] = maxc.Sub(cr.Mul(t))
	}
	return torch.Cat(chans, 1)
}

// RandomGrayscale replaces each RGB sample by its gray image (0.2989 R + 0.587 G +
// 0.114 B in all three channels) with probability P, drawn per sample. One-channel
// data is returned unchanged.
type RandomGrayscale struct {
	// P is the probability of converting a sample, in [0, 1].
	P float64
}

// Apply converts a random subset of the samples to gray.
func (t RandomGrayscale) Apply(x *torch.Tensor, g *torch.Generator) *torch.Tensor {
	const name = "random grayscale"
	o, err := beginEach(name, t.P, x, g)
	if err != nil {
		return torch.ErrTensor(err)
	}
	if o.c == 1 {
		o.s.Close()
		return identity(x)
	}
	if o.c != 3 {
		o.s.Close()
		return fail(name, "want 1 or 3 channels, got %d", o.c)
	}
	return o.finish(torch.Where(o.chosen(t.P), gray(o.x).Expand(o.n, 3, o.h, o.w), o.x))
}

// String describes the transform.
func (t RandomGrayscale) String() string { return fmt.Sprintf("RandomGrayscale(p=%g)", t.P) }

// GaussianNoise adds independent normal noise of standard deviation Std to every pixel.
// The result is not clamped.
type GaussianNoise struct {
	// Std is the noise's standard deviation on the [0, 1] pixel scale (>= 0).
	Std float64
}

// Apply adds noise to every sample.
func (t GaussianNoise) Apply(x *torch.Tensor, g *torch.Generator) *torch.Tensor {
	const name = "gaussian noise"
	if !(t.Std >= 0) || math.IsInf(t.Std, 0) {
		return fail(name, "std %v, want a finite value >= 0", t.Std)
	}
	if t.Std == 0 {
		return identity(x)
	}
	o, err := begin(name, x, g)
	if err != nil {
		return torch.ErrTensor(err)
	}
	noise := o.s.Track(torch.Randn([]int64{o.n, o.c, o.h, o.w}, torch.Options{DType: o.dt, Device: o.dev, Generator: o.g}))
	return o.finish(o.x.Add(noise.MulScalar(t.Std)))
}

// String describes the transform.
func (t GaussianNoise) String() string { return fmt.Sprintf("GaussianNoise(std=%g)", t.Std) }

// RandomErasing fills a random rectangle of each sample with Value, with probability P
// per sample (torchvision's RandomErasing). The rectangle's area is a fraction of the
// image drawn from Scale and its aspect ratio (height/width) is log-uniform in Ratio;
// as in torchvision, up to 10 tries are made per sample and a sample none of whose
// tries fits is left unchanged. All channels are erased alike, so it suits grayscale
// data.
type RandomErasing struct {
	// P is the probability of erasing in a sample, in [0, 1].
	P float64
	// Scale bounds the erased area as a fraction of the image; zero means (0.02, 0.33).
	Scale [2]float64
	// Ratio bounds the rectangle's aspect ratio; zero means (0.3, 3.3).
	Ratio [2]float64
	// Value fills the rectangle, on the [0, 1] pixel scale (0 is black; torchvision's
	// default of 0 after normalisation corresponds to the data set's mean here).
	Value float64
}

// withDefaults fills in the zero fields.
func (t RandomErasing) withDefaults() RandomErasing {
	if t.Scale == [2]float64{} {
		t.Scale = [2]float64{0.02, 0.33}
	}
	if t.Ratio == [2]float64{} {
		t.Ratio = [2]float64{0.3, 3.3}
	}
	return t
}

// Apply erases one rectangle in a random subset of the samples.
func (t RandomErasing) Apply(x *torch.Tensor, g *torch.Generator) *torch.Tensor {
	const name = "random erasing"
	t = t.withDefaults()
	if !(t.Scale[0] >= 0 && t.Scale[0] <= t.Scale[1] && t.Scale[1] <= 1) {
		return fail(name, "scale %v, want 0 <= min <= max <= 1", t.Scale)
	}
	if !(t.Ratio[0] > 0 && t.Ratio[0] <= t.Ratio[1] && !math.IsInf(t.Ratio[1], 0)) {
		return fail(name, "ratio %v, want 0 < min <= max", t.Ratio)
	}
	if math.IsNaN(t.Value) {
		return fail(name, "value is NaN")
	}
	o, err := beginEach(name, t.P, x, g)
	if err != nil {
		return torch.ErrTensor(err)
	}
	n, h, w := o.n, float64(o.h), float64(o.w)
	const tries = 10
	area := o.uniform(t.Scale[0]*h*w, t.Scale[1]*h*w, n, tries)
	aspect := o.uniform(math.Log(t.Ratio[0]), math.Log(t.Ratio[1]), n, tries).Exp()
	eh := area.Mul(aspect).Sqrt().Round() // [N,tries]
	ew := area.Div(aspect).Sqrt().Round()
	fits := eh.LtScalar(h).LogicalAnd(ew.LtScalar(w)).To(torch.Float64)
	first := fits.Argmax(1, true)
	ok := fits.AmaxDims([]int64{1}, true).GtScalar(0.5) // [N,1]
	eh = eh.Gather(1, first)
	ew = ew.Gather(1, first)
	top := o.uniform(0, 1, n, 1).Mul(eh.RSubScalar(h + 1)).Floor().Minimum(eh.RSubScalar(h))
	left := o.uniform(0, 1, n, 1).Mul(ew.RSubScalar(w + 1)).Floor().Minimum(ew.RSubScalar(w))
	erase := o.uniform(0, 1, n, 1).LtScalar(t.P).LogicalAnd(ok).View(n, 1, 1, 1)
	ys := o.arange(o.h, torch.Float64).View(1, 1, o.h, 1)
	xs := o.arange(o.w, torch.Float64).View(1, 1, 1, o.w)
	top, left = top.View(n, 1, 1, 1), left.View(n, 1, 1, 1)
	inRows := ys.Ge(top).LogicalAnd(ys.Lt(top.Add(eh.View(n, 1, 1, 1))))
	inCols := xs.Ge(left).LogicalAnd(xs.Lt(left.Add(ew.View(n, 1, 1, 1))))
	mask := inRows.LogicalAnd(inCols).LogicalAnd(erase) // [N,1,H,W]
	return o.finish(o.x.MaskedFill(mask, t.Value))
}

// String describes the transform.
func (t RandomErasing) String() string {
	t = t.withDefaults()
	return fmt.Sprintf("RandomErasing(p=%g, scale=%g-%g, ratio=%g-%g, value=%g)", t.P, t.Scale[0], t.Scale[1], t.Ratio[0], t.Ratio[1], t.Value)
}

// composed applies transforms in order.
type composed []Transform

// Compose returns a transform applying ts in order (nil entries are skipped). The
// intermediate results are freed before Apply returns.
func Compose(ts ...Transform) Transform {
	var c composed
	for _, t := range ts {
		if t != nil {
			c = append(c, t)
		}
	}
	return c
}

// Apply runs each transform on the previous one's output.
func (c composed) Apply(x *torch.Tensor, g *torch.Generator) *torch.Tensor {
	if len(c) == 0 {
		return identity(x)
	}
	o, err := begin("compose", x, g)
	if err != nil {
		return torch.ErrTensor(err)
	}
	y := o.x
	for _, t := range c {
		y = o.s.Track(t.Apply(y, g))
	}
	return o.finish(y)
}

// String lists the transforms.
func (c composed) String() string {
	parts := make([]string, len(c))
	for i, t := range c {
		parts[i] = fmt.Sprint(t)
	}
	return "Compose(" + strings.Join(parts, ", ") + ")"
}

// normalized wraps a transform for normalised data.
type normalized struct {
	t         Transform
	mean, std []float64
}

// OnNormalized returns a transform that applies t to data normalised with mean and std
// (len C each): it maps x back to [0, 1] pixel values (x·std + mean), applies t, and
// normalises the result again. Use it to augment Batch.X or other normalised tensors
// with the transforms of this package.
func OnNormalized(t Transform, mean, std []float64) Transform {
	return normalized{t, append([]float64(nil), mean...), append([]float64(nil), std...)}
}

// Apply un-normalises, applies the wrapped transform and normalises again.
func (nt normalized) Apply(x *torch.Tensor, g *torch.Generator) *torch.Tensor {
	const name = "normalized"
	if len(nt.mean) != len(nt.std) {
		return fail(name, "mean has %d entries, std %d", len(nt.mean), len(nt.std))
	}
	for _, s := range nt.std {
		if !(s > 0) {
			return fail(name, "std %v, want positive values", nt.std)
		}
	}
	o, err := begin(name, x, g)
	if err != nil {
		return torch.ErrTensor(err)
	}
	if int64(len(nt.mean)) != o.c {
		o.s.Close()
		return fail(name, "mean and std have %d entries for %d channels", len(nt.mean), o.c)
	}
	m, s := o.channelConst(nt.mean), o.channelConst(nt.std)
	y := o.x.Mul(s).Add(m)
	if nt.t != nil {
		y = o.s.Track(nt.t.Apply(y, g))
	}
	return o.finish(y.Sub(m).Div(s))
}

// channelConst returns vals as a [1,C,1,1] tensor of x's dtype on its device.
func (o *opScope) channelConst(vals []float64) *torch.Tensor {
	return o.s.Track(torch.FromSlice(vals, 1, int64(len(vals)), 1, 1)).ToDeviceDType(o.dev, o.dt)
}

// String describes the transform.
func (nt normalized) String() string { return fmt.Sprintf("OnNormalized(%v)", nt.t) }

// TwoViews returns two independently augmented views of the batch x, drawing both
// from g (for SimCLR). A nil t gives two handles to x. Both views join x's scope.
func TwoViews(x *torch.Tensor, t Transform, g *torch.Generator) (v1, v2 *torch.Tensor) {
	if t == nil {
		return identity(x), identity(x)
	}
	return t.Apply(x, g), t.Apply(x, g)
}

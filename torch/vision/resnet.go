// Package vision holds the image models modelstitch compares: the ResNet family
// with torchvision's parameter names, cut points for stitching, and inference
// of a ResNet's configuration from a checkpoint's tensor shapes.
package vision

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"modelstitch/torch"
	"modelstitch/torch/nn"
)

// ResNetConfig describes one member of the ResNet family.
type ResNetConfig struct {
	Depth      int     // 18, 34 (basic blocks), 50, 101, 152 (bottleneck blocks)
	Width      float64 // multiplier of the base width 64 (0.25 → 16,32,64,128 channels per stage); 0 means 1
	Stem       string  // "imagenet" (7×7/2 conv + 3×3/2 maxpool) or "cifar" (3×3/1 conv, no maxpool); "" = imagenet
	InChannels int     // 0 means 3
	Classes    int     // size of fc; 0 = a backbone with no fc (Forward returns pooled features)
	// WidthPerGroup is torchvision's width_per_group for bottleneck blocks:
	// their inner width is planes·WidthPerGroup/64. 0 means 64; 128 makes
	// wide_resnet50_2 and wide_resnet101_2. Basic blocks must keep 64.
	WidthPerGroup int
	// StemPadding is the stem convolution's padding; 0 means (k−1)/2 (3 for
	// the 7×7 ImageNet stem, 1 for the 3×3 CIFAR stem). solo-learn's CIFAR
	// stem pads by 2. The weights cannot show it.
	StemPadding int
}

// Stem names accepted by ResNetConfig.Stem.
const (
	StemImageNet = "imagenet"
	StemCIFAR    = "cifar"
)

// resnetLayouts gives the number of residual blocks in layer1..layer4 for
// each depth, and whether the blocks are bottlenecks, as in torchvision.
var resnetLayouts = map[int]struct {
	blocks     [4]int
	bottleneck bool
}{
	18:  {[4]int{2, 2, 2, 2}, false},
	34:  {[4]int{3, 4, 6, 3}, false},
	50:  {[4]int{3, 4, 6, 3}, true},
	101: {[4]int{3, 4, 23, 3}, true},
	152: {[4]int{3, 8, 36, 3}, true},
}

// validDepths lists the supported depths in increasing order, for messages.
const validDepths = "18, 34, 50, 101, 152"

// Archs lists the names of the ResNets NewResNet builds, in increasing
// depth: "resnet18", "resnet34", "resnet50", "resnet101", "resnet152".
func Archs() []string {
	depths := slices.Sorted(maps.Keys(resnetLayouts))
	out := make([]string, len(depths))
	for i, d := range depths {
		out[i] = "resnet" + strconv.Itoa(d)
	}
	return out
}

// normalized returns c with its zero values replaced by the defaults, or an
// error for a configuration no ResNet has.
func (c ResNetConfig) normalized() (ResNetConfig, error) {
	if _, ok := resnetLayouts[c.Depth]; !ok {
		return c, fmt.Errorf("vision: ResNet depth %d is not one of %s", c.Depth, validDepths)
	}
	if c.Width == 0 {
		c.Width = 1
	}
	if c.Width < 0 || math.IsNaN(c.Width) || math.IsInf(c.Width, 0) {
		return c, fmt.Errorf("vision: ResNet width %v must be positive", c.Width)
	}
	if math.Round(64*c.Width) < 1 {
		return c, fmt.Errorf("vision: ResNet width %v gives fewer than 1 base channel", c.Width)
	}
	switch strings.ToLower(c.Stem) {
	case "", StemImageNet:
		c.Stem = StemImageNet
	case StemCIFAR:
		c.Stem = StemCIFAR
	default:
		return c, fmt.Errorf("vision: ResNet stem %q is not %q or %q", c.Stem, StemImageNet, StemCIFAR)
	}
	if c.InChannels == 0 {
		c.InChannels = 3
	}
	if c.InChannels < 0 {
		return c, fmt.Errorf("vision: ResNet input channels %d must be positive", c.InChannels)
	}
	if c.Classes < 0 {
		return c, fmt.Errorf("vision: ResNet classes %d must be ≥ 0", c.Classes)
	}
	if c.WidthPerGroup == 64 {
		c.WidthPerGroup = 0 // the default has one spelling, so configurations compare equal
	}
	if c.WidthPerGroup < 0 || c.WidthPerGroup != 0 && !resnetLayouts[c.Depth].bottleneck {
		return c, fmt.Errorf("vision: ResNet-%d: width per group %d (only bottleneck ResNets, 50 and deeper, can be wide)", c.Depth, c.WidthPerGroup)
	}
	if c.StemPadding < 0 || c.StemPadding > 3 {
		return c, fmt.Errorf("vision: ResNet stem padding %d must be 0 (the default) to 3", c.StemPadding)
	}
	return c, nil
}

// stemGeometry is the stem convolution's kernel, stride and padding.
func (c ResNetConfig) stemGeometry() (k, stride, pad int64) {
	k, stride = 7, 2
	if c.Stem == StemCIFAR {
		k, stride = 3, 1
	}
	pad = (k - 1) / 2
	if c.StemPadding > 0 {
		pad = int64(c.StemPadding)
	}
	return k, stride, pad
}

// inner is a bottleneck's inner width for a stage of the given planes.
func (c ResNetConfig) inner(planes int64) int64 {
	if c.WidthPerGroup == 0 {
		return planes
	}
	return planes * int64(c.WidthPerGroup) / 64
}

// ArchName is torchvision's name of the architecture: resnet50, or
// wide_resnet50_2 when WidthPerGroup is 128.
func (c ResNetConfig) ArchName() string {
	if c.WidthPerGroup != 0 && c.WidthPerGroup != 64 {
		if c.WidthPerGroup%64 == 0 {
			return fmt.Sprintf("wide_resnet%d_%d", c.Depth, c.WidthPerGroup/64)
		}
		return fmt.Sprintf("resnet%d-wpg%d", c.Depth, c.WidthPerGroup)
	}
	return fmt.Sprintf("resnet%d", c.Depth)
}

// ParseArchConfig reads an architecture name as ParseArch does, and also
// torchvision's wide_resnet50_2 and wide_resnet101_2 (WidthPerGroup 128).
func ParseArchConfig(s string) (ResNetConfig, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if rest, ok := strings.CutPrefix(t, "wide_resnet"); ok {
		d, f, ok := strings.Cut(rest, "_")
		depth, err1 := strconv.Atoi(d)
		factor, err2 := strconv.Atoi(f)
		if !ok || err1 != nil || err2 != nil || factor < 1 || !resnetLayouts[depth].bottleneck {
			return ResNetConfig{}, fmt.Errorf("vision: architecture %q: want wide_resnet50_2 or wide_resnet101_2", s)
		}
		return ResNetConfig{Depth: depth, WidthPerGroup: 64 * factor}, nil
	}
	d, err := ParseArch(s)
	return ResNetConfig{Depth: d}, err
}

// baseWidth is the channel count of the stem and of layer1's blocks (before
// the bottleneck expansion): round(64·Width). Stage i has baseWidth·2^i.
func (c ResNetConfig) baseWidth() int64 { return int64(math.Round(64 * c.Width)) }

// expansion is the ratio of a block's output channels to its inner width.
func (c ResNetConfig) expansion() int64 {
	if resnetLayouts[c.Depth].bottleneck {
		return 4
	}
	return 1
}

// String describes the configuration briefly, leaving out defaults, e.g.
// "resnet18 width 0.25 cifar-stem 1ch 10 classes" or "resnet50 backbone".
func (c ResNetConfig) String() string {
	var b strings.Builder
	b.WriteString(c.ArchName())
	if c.Width != 0 && c.Width != 1 {
		b.WriteString(" width " + strconv.FormatFloat(c.Width, 'g', -1, 64))
	}
	if c.Stem != "" && strings.ToLower(c.Stem) != StemImageNet {
		b.WriteString(" " + strings.ToLower(c.Stem) + "-stem")
	}
	if c.StemPadding > 0 {
		fmt.Fprintf(&b, " stem-padding %d", c.StemPadding)
	}
	if c.InChannels != 0 && c.InChannels != 3 {
		fmt.Fprintf(&b, " %dch", c.InChannels)
	}
	if c.Classes > 0 {
		fmt.Fprintf(&b, " %d classes", c.Classes)
	} else {
		b.WriteString(" backbone")
	}
	return b.String()
}

// ParseArch reads an architecture name such as "resnet18", "ResNet-50" or
// "resnet_101" and returns its depth.
func ParseArch(s string) (depth int, err error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if !strings.HasPrefix(t, "resnet") {
		return 0, fmt.Errorf("vision: architecture %q is not a ResNet (want resnet18, resnet34, resnet50, resnet101 or resnet152)", s)
	}
	t = strings.TrimLeft(strings.TrimPrefix(t, "resnet"), "-_")
	d, err := strconv.Atoi(t)
	if err != nil {
		return 0, fmt.Errorf("vision: architecture %q: no depth after \"resnet\" (want one of %s)", s, validDepths)
	}
	if _, ok := resnetLayouts[d]; !ok {
		return 0, fmt.Errorf("vision: architecture %q: depth %d is not one of %s", s, d, validDepths)
	}
	return d, nil
}

// Block is a residual block: a BasicBlock or a Bottleneck.
type Block interface {
	nn.Module
	// OutChannels is the number of channels the block outputs.
	OutChannels() int64
}

// BasicBlock is ResNet-18/34's residual block: two 3×3 convolutions
// (the first with the block's stride), each followed by batch norm, with a
// shortcut that is the identity or a 1×1 convolution and batch norm
// (Downsample) when the shape changes.
type BasicBlock struct {
	*nn.Base
	Conv1, Conv2 *nn.Conv2d
	BN1, BN2     *nn.BatchNorm
	Downsample   *nn.Sequential // nil for an identity shortcut
}

// Bottleneck is ResNet-50/101/152's residual block: 1×1 reduce, 3×3 (with the
// block's stride, as in torchvision's "v1.5"), 1×1 expand by 4, each followed by
// batch norm, with a shortcut as in BasicBlock.
type Bottleneck struct {
	*nn.Base
	Conv1, Conv2, Conv3 *nn.Conv2d
	BN1, BN2, BN3       *nn.BatchNorm
	Downsample          *nn.Sequential // nil for an identity shortcut
}

// builder makes layers with torchvision's initialisation and keeps the first error.
type builder struct{ err error }

// conv makes a bias-free k×k convolution with padding (k−1)/2, initialised
// kaiming_normal_(mode="fan_out", nonlinearity="relu").
func (bd *builder) conv(in, out, k, stride int64) *nn.Conv2d {
	return bd.convPadded(in, out, k, stride, (k-1)/2)
}

// convPadded is conv with an explicit padding.
func (bd *builder) convPadded(in, out, k, stride, pad int64) *nn.Conv2d {
	c := nn.NewConv2d(in, out, k, nn.Conv2dConfig{Stride: stride, Padding: pad, NoBias: true})
	if err := c.Weight.Err(); err != nil && bd.err == nil {
		bd.err = err
	}
	if err := nn.KaimingNormalFanOut(c.Weight); err != nil && bd.err == nil {
		bd.err = err
	}
	return c
}

func (bd *builder) downsample(in, out, stride int64) *nn.Sequential {
	if stride == 1 && in == out {
		return nil
	}
	return nn.NewSequential(bd.conv(in, out, 1, stride), nn.NewBatchNorm2d(out))
}

func (bd *builder) basicBlock(in, planes, stride int64) *BasicBlock {
	b := &BasicBlock{Base: nn.NewBase(),
		Conv1: bd.conv(in, planes, 3, stride), BN1: nn.NewBatchNorm2d(planes),
		Conv2: bd.conv(planes, planes, 3, 1), BN2: nn.NewBatchNorm2d(planes),
		Downsample: bd.downsample(in, planes, stride)}
	b.RegisterModule("conv1", b.Conv1)
	b.RegisterModule("bn1", b.BN1)
	b.RegisterModule("conv2", b.Conv2)
	b.RegisterModule("bn2", b.BN2)
	if b.Downsample != nil {
		b.RegisterModule("downsample", b.Downsample)
	}
	return b
}

// OutChannels returns the block's output channels.
func (b *BasicBlock) OutChannels() int64 { return b.BN2.Features }

// Forward computes relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)).
// Intermediates are freed as soon as they are used (see torch.Tensor.Then).
func (b *BasicBlock) Forward(x *torch.Tensor) *torch.Tensor {
	out := b.Conv1.Forward(x).Then(b.BN1.Forward).Then((*torch.Tensor).ReluInPlace).
		Then(b.Conv2.Forward).Then(b.BN2.Forward)
	return residual(out, b.Downsample, x)
}

func (bd *builder) bottleneck(in, planes, width, stride int64) *Bottleneck {
	out := planes * 4
	b := &Bottleneck{Base: nn.NewBase(),
		Conv1: bd.conv(in, width, 1, 1), BN1: nn.NewBatchNorm2d(width),
		Conv2: bd.conv(width, width, 3, stride), BN2: nn.NewBatchNorm2d(width),
		Conv3: bd.conv(width, out, 1, 1), BN3: nn.NewBatchNorm2d(out),
		Downsample: bd.downsample(in, out, stride)}
	b.RegisterModule("conv1", b.Conv1)
	b.RegisterModule("bn1", b.BN1)
	b.RegisterModule("conv2", b.Conv2)
	b.RegisterModule("bn2", b.BN2)
	b.RegisterModule("conv3", b.Conv3)
	b.RegisterModule("bn3", b.BN3)
	if b.Downsample != nil {
		b.RegisterModule("downsample", b.Downsample)
	}
	return b
}

// OutChannels returns the block's output channels.
func (b *Bottleneck) OutChannels() int64 { return b.BN3.Features }

// Forward computes relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x)).
// Intermediates are freed as soon as they are used (see torch.Tensor.Then).
func (b *Bottleneck) Forward(x *torch.Tensor) *torch.Tensor {
	out := b.Conv1.Forward(x).Then(b.BN1.Forward).Then((*torch.Tensor).ReluInPlace).
		Then(b.Conv2.Forward).Then(b.BN2.Forward).Then((*torch.Tensor).ReluInPlace).
		Then(b.Conv3.Forward).Then(b.BN3.Forward)
	return residual(out, b.Downsample, x)
}

// residual returns relu(out + shortcut(x)) computed in out's memory, freeing
// the shortcut's result.
func residual(out *torch.Tensor, ds *nn.Sequential, x *torch.Tensor) *torch.Tensor {
	sc := x
	if ds != nil {
		sc = ds.Forward(x)
	}
	// In place, as torchvision does (out += identity; relu(inplace=True)).
	err := out.AddInPlace(sc)
	if sc != x {
		sc.Free()
	}
	if err != nil {
		out.Free()
		return torch.ErrTensor(err)
	}
	return out.Then((*torch.Tensor).ReluInPlace)
}

// ResNet is a torchvision-compatible residual network. Its state dict has
// exactly torchvision's names and shapes (conv1.weight, bn1.running_mean,
// layer2.0.downsample.0.weight, fc.bias, ...), with the stem and width the
// configuration asks for.
type ResNet struct {
	*nn.Base
	// Config is the configuration the network was built from, with defaults filled in.
	Config ResNetConfig
	// Conv1 and BN1 form the stem (followed by ReLU and, for the ImageNet stem, a 3×3/2 max pool).
	Conv1 *nn.Conv2d
	BN1   *nn.BatchNorm
	// Layer1..Layer4 are the four stages; their elements are Blocks.
	Layer1, Layer2, Layer3, Layer4 *nn.Sequential
	// FC is the classifier; nil for a backbone (Config.Classes == 0).
	FC *nn.Linear

	stages []stage // stem, every block, pool: the cut points in order
}

// stage is one step of the forward pass that ends at a cut point.
type stage struct {
	name string
	f    func(*torch.Tensor) *torch.Tensor
}

// NewResNet builds a ResNet with torchvision's initialisation: convolutions
// kaiming_normal_(mode="fan_out", nonlinearity="relu"), batch norms weight 1
// and bias 0, the classifier PyTorch's default Linear init. Random draws come
// from libtorch's global generator (see torch.ManualSeed).
func NewResNet(cfg ResNetConfig) (*ResNet, error) {
	c, err := cfg.normalized()
	if err != nil {
		return nil, err
	}
	layout := resnetLayouts[c.Depth]
	base := c.baseWidth()
	r := &ResNet{Base: nn.NewBase(), Config: c}
	bd := &builder{}
	k, stride, pad := c.stemGeometry()
	r.Conv1 = bd.convPadded(int64(c.InChannels), base, k, stride, pad)
	r.BN1 = nn.NewBatchNorm2d(base)
	r.RegisterModule("conv1", r.Conv1)
	r.RegisterModule("bn1", r.BN1)

	in := base
	layers := []**nn.Sequential{&r.Layer1, &r.Layer2, &r.Layer3, &r.Layer4}
	for i, lp := range layers {
		planes := base << i
		stride := int64(2)
		if i == 0 {
			stride = 1
		}
		seq := nn.NewSequential()
		for j := 0; j < layout.blocks[i]; j++ {
			var blk Block
			if layout.bottleneck {
				blk = bd.bottleneck(in, planes, c.inner(planes), stride)
			} else {
				blk = bd.basicBlock(in, planes, stride)
			}
			seq.Append(blk)
			in = blk.OutChannels()
			stride = 1
		}
		*lp = seq
		r.RegisterModule(fmt.Sprintf("layer%d", i+1), seq)
	}
	if c.Classes > 0 {
		r.FC = nn.NewLinear(in, int64(c.Classes), true)
		r.RegisterModule("fc", r.FC)
	}
	if bd.err == nil {
		bd.err = nn.Err(r)
	}
	if bd.err != nil {
		nn.Free(r)
		return nil, fmt.Errorf("vision: building %v: %w", c, bd.err)
	}
	r.buildStages()
	return r, nil
}

// buildStages lists the forward pass as steps ending at each cut point.
func (r *ResNet) buildStages() {
	r.stages = append(r.stages, stage{"stem", r.stem})
	for i, l := range r.layers() {
		for j, blk := range l.Layers {
			r.stages = append(r.stages, stage{fmt.Sprintf("layer%d.%d", i+1, j), blk.Forward})
		}
	}
	r.stages = append(r.stages, stage{"pool", pool})
}

// layers returns layer1..layer4.
func (r *ResNet) layers() []*nn.Sequential {
	return []*nn.Sequential{r.Layer1, r.Layer2, r.Layer3, r.Layer4}
}

// stem applies conv1, bn1, ReLU and, for the ImageNet stem, the 3×3/2 max pool.
func (r *ResNet) stem(x *torch.Tensor) *torch.Tensor {
	h := r.Conv1.Forward(x).Then(r.BN1.Forward).Then((*torch.Tensor).ReluInPlace)
	if r.Config.Stem == StemImageNet {
		h = h.Then(func(t *torch.Tensor) *torch.Tensor {
			return torch.MaxPool2d(t, torch.P(3), torch.P(2), torch.P(1), torch.P(1), false)
		})
	}
	return h
}

// pool averages over all positions and flattens to [N, C].
func pool(h *torch.Tensor) *torch.Tensor {
	return torch.AdaptiveAvgPool2d(h, torch.P(1)).Then(func(t *torch.Tensor) *torch.Tensor { return t.Flatten(1, -1) })
}

// Forward maps images [N, InChannels, H, W] to logits [N, Classes], or to the
// pooled features [N, FeatureDim] for a backbone.
func (r *ResNet) Forward(x *torch.Tensor) *torch.Tensor {
	h := r.run(x, r.stages)
	if r.FC == nil {
		return h
	}
	return h.Then(r.FC.Forward)
}

// CutPoints returns the names of the places the network can be cut, in
// forward order: "stem", every residual block ("layer1.0" … "layer4.1" for a
// ResNet-18), and "pool".
func (r *ResNet) CutPoints() []string {
	out := make([]string, len(r.stages))
	for i, s := range r.stages {
		out[i] = s.name
	}
	return out
}

// cutIndex finds a cut point by name.
func (r *ResNet) cutIndex(cut string) (int, error) {
	for i, s := range r.stages {
		if s.name == cut {
			return i, nil
		}
	}
	return -1, fmt.Errorf("vision: %v has no cut point %q; valid cuts: %s",
		r.Config, cut, strings.Join(r.CutPoints(), ", "))
}

// ForwardTo runs the network from images x up to and including the cut point
// and returns the activations there: after conv1/bn1/relu(/maxpool) for
// "stem", a block's output for "layerI.J", the flattened [N, C] global
// average for "pool". Nothing after the cut is computed. An unknown cut gives
// an error tensor naming the valid ones.
func (r *ResNet) ForwardTo(x *torch.Tensor, cut string) *torch.Tensor {
	k, err := r.cutIndex(cut)
	if err != nil {
		return torch.ErrTensor(err)
	}
	return r.run(x, r.stages[:k+1])
}

// run applies stages in turn to x, freeing every intermediate result (never x).
func (r *ResNet) run(x *torch.Tensor, stages []stage) *torch.Tensor {
	h := x
	for _, s := range stages {
		if h == x {
			h = s.f(h)
		} else {
			h = h.Then(s.f)
		}
	}
	return h
}

// ForwardFrom runs the network from activations h at the cut point to the
// logits, so that ForwardFrom(ForwardTo(x, cut), cut) is Forward(x). A
// backbone has no logits: it gives an error tensor, as does an unknown cut.
func (r *ResNet) ForwardFrom(h *torch.Tensor, cut string) *torch.Tensor {
	k, err := r.cutIndex(cut)
	if err != nil {
		return torch.ErrTensor(err)
	}
	if r.FC == nil {
		return torch.ErrTensor(fmt.Errorf("vision: ForwardFrom(%q): %v has no classifier (fc)", cut, r.Config))
	}
	out := r.run(h, r.stages[k+1:])
	if out == h {
		return r.FC.Forward(h)
	}
	return out.Then(r.FC.Forward)
}

// FeatureDim returns the number of channels entering fc (the pooled feature size).
func (r *ResNet) FeatureDim() int64 { return featureDim(r.Config) }

func featureDim(c ResNetConfig) int64 { return c.baseWidth() * 8 * c.expansion() }

// HasClassifier reports whether the network has an fc layer.
func (r *ResNet) HasClassifier() bool { return r.FC != nil }

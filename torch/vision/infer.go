package vision

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"modelstitch/torch"
	"modelstitch/torch/nn"
)

// InferResNetConfig works out which ResNet a state dict holds from its tensor
// shapes (torchvision names, prefixes already stripped):
//
//   - block type: bottlenecks if layer1.0.conv3.weight is present;
//   - depth: from the number of blocks in layer1..layer4 and the block type;
//   - width: conv1.weight's output channels / 64;
//   - stem: conv1's kernel, 7 → "imagenet", 3 → "cifar" (shapes cannot show
//     a max pool, so this is a guess a caller may override, see
//     ResNetFromStateDict, within the stems ResNetConfig offers);
//   - input channels: conv1.weight's input channels;
//   - classes: fc.weight's rows, 0 (a backbone) when there is no fc.
//
// It then checks every tensor such a ResNet has against the shapes given
// (num_batches_tracked may be absent, as in old checkpoints) and returns a
// one-line description such as "a ResNet-50 backbone, no classifier". Keys
// outside conv1, bn1, layer1..4 and fc are ignored. What does not fit is an
// error naming the missing, unexpected or mis-shaped tensors.
func InferResNetConfig(shapes map[string][]int64) (ResNetConfig, string, error) {
	var c ResNetConfig
	w, ok := shapes["conv1.weight"]
	if _, deep := shapes["conv1.0.weight"]; !ok && deep {
		return c, "", fmt.Errorf("vision: conv1.0.weight, conv1.1.*, ... form a timm deep stem (resnet*c/d/s/t: three 3×3 convolutions), " +
			"which these ResNets do not build; use a plain resnet18/34/50/101/152 or wide_resnet50_2/101_2 checkpoint")
	}
	if !ok {
		return c, "", notResNet(shapes, "no conv1.weight")
	}
	if len(w) != 4 || w[2] != w[3] {
		return c, "", fmt.Errorf("vision: not a ResNet: conv1.weight has shape %v, want a square convolution [out, in, k, k]", w)
	}
	switch w[2] {
	case 7:
		c.Stem = StemImageNet
	case 3:
		c.Stem = StemCIFAR
	default:
		return c, "", fmt.Errorf("vision: not a ResNet stem: conv1.weight has a %d×%d kernel, want 7×7 (ImageNet) or 3×3 (CIFAR)", w[2], w[3])
	}
	c.Width = float64(w[0]) / 64
	c.InChannels = int(w[1])

	_, bottleneck := shapes["layer1.0.conv3.weight"]
	var blocks [4]int
	for i := range blocks {
		n, err := countBlocks(shapes, i+1)
		if err != nil {
			return c, "", err
		}
		blocks[i] = n
	}
	for d, l := range resnetLayouts {
		if l.blocks == blocks && l.bottleneck == bottleneck {
			c.Depth = d
		}
	}
	if w1, ok := shapes["layer1.0.conv1.weight"]; ok && bottleneck && len(w1) == 4 && w[0] > 0 && w1[0] != w[0] {
		if w1[0]*64%w[0] != 0 {
			return c, "", fmt.Errorf("vision: layer1.0.conv1.weight has %d output channels for a %d-channel stem: no ResNet or wide ResNet has that inner width", w1[0], w[0])
		}
		c.WidthPerGroup = int(w1[0] * 64 / w[0])
	}
	if c.Depth == 0 {
		kind := "basic"
		if bottleneck {
			kind = "bottleneck"
		}
		return c, "", fmt.Errorf("vision: %v %s blocks in layer1..layer4 match no ResNet (18, 34: [2 2 2 2], [3 4 6 3] basic; 50, 101, 152: [3 4 6 3], [3 4 23 3], [3 8 36 3] bottleneck)", blocks, kind)
	}
	if fw, ok := shapes["fc.weight"]; ok {
		if len(fw) != 2 {
			return c, "", fmt.Errorf("vision: fc.weight has shape %v, want [classes, features]", fw)
		}
		c.Classes = int(fw[0])
	}

	if err := checkShapes(c, shapes); err != nil {
		return c, "", err
	}
	return c, describe(c), nil
}

// notResNet explains that shapes are not a ResNet's, showing a few of the keys
// and pointing at a wrapper prefix if one is there.
func notResNet(shapes map[string][]int64, why string) error {
	keys := make([]string, 0, len(shapes))
	for k := range shapes {
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return fmt.Errorf("vision: not a ResNet: %s (the state dict is empty)", why)
	}
	sort.Strings(keys) // the first prefix in sorted order: the same hint every run
	for _, k := range keys {
		if strings.HasSuffix(k, ".conv1.weight") && !strings.Contains(k, "layer") {
			return fmt.Errorf("vision: not a ResNet as it stands: %s, but there is %s; pick that network by its key (prefix %s)",
				why, k, strings.TrimSuffix(k, ".conv1.weight"))
		}
	}
	if len(keys) > 5 {
		keys = append(keys[:5], "…")
	}
	return fmt.Errorf("vision: not a ResNet: %s (keys are %s)", why, strings.Join(keys, ", "))
}

// countBlocks returns the number of residual blocks layerN holds, checking
// that their indices run 0, 1, ... without gaps.
func countBlocks(shapes map[string][]int64, layer int) (int, error) {
	prefix := fmt.Sprintf("layer%d.", layer)
	seen := map[int]bool{}
	for k := range shapes {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		idx, _, _ := strings.Cut(k[len(prefix):], ".")
		n, err := strconv.Atoi(idx)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("vision: not a torchvision ResNet: key %s has no block index after %s", k, prefix)
		}
		seen[n] = true
	}
	if len(seen) == 0 {
		return 0, notResNet(shapes, fmt.Sprintf("no %s* blocks", prefix))
	}
	for i := 0; i < len(seen); i++ {
		if !seen[i] {
			return 0, fmt.Errorf("vision: not a torchvision ResNet: layer%d has %d blocks but no %s%d", layer, len(seen), prefix, i)
		}
	}
	return len(seen), nil
}

// ResNetFromStateDict builds the ResNet whose tensors sd holds (see
// InferResNetConfig), lets override adjust the inferred configuration (for
// instance the stem, which shapes cannot tell apart; nil for none), and loads
// sd into it. Keys outside the ResNet's modules are ignored and a missing
// num_batches_tracked keeps its zero; anything else that does not fit is an
// error. It also returns the description of the network.
func ResNetFromStateDict(sd map[string]*torch.Tensor, override func(*ResNetConfig)) (*ResNet, string, error) {
	shapes := make(map[string][]int64, len(sd))
	for k, t := range sd {
		if err := t.Err(); err != nil {
			return nil, "", fmt.Errorf("vision: tensor %s: %w", k, err)
		}
		s, err := t.Shape()
		if err != nil {
			return nil, "", fmt.Errorf("vision: tensor %s: %w", k, err)
		}
		shapes[k] = s
	}
	cfg, desc, err := InferResNetConfig(shapes)
	if err != nil {
		return nil, "", err
	}
	if override != nil {
		override(&cfg)
		if err := checkShapes(cfg, shapes); err != nil {
			return nil, "", err
		}
		if cfg, err = cfg.normalized(); err != nil {
			return nil, "", err
		}
		desc = describe(cfg)
	}
	r, err := NewResNet(cfg)
	if err != nil {
		return nil, "", err
	}
	own := map[string]*torch.Tensor{}
	for k, t := range sd {
		if inResNetNamespace(k) {
			own[k] = t
		}
	}
	if err := nn.LoadStateDict(r, own, false); err != nil {
		nn.Free(r)
		return nil, "", err
	}
	return r, desc, nil
}

// checkShapes compares shapes with what the ResNet c has.
func checkShapes(c ResNetConfig, shapes map[string][]int64) error {
	names, want, err := stateDictShapes(c)
	if err != nil {
		return err
	}
	var missing, wrong, unexpected []string
	for _, k := range names {
		have, ok := shapes[k]
		switch {
		case !ok && !strings.HasSuffix(k, ".num_batches_tracked"):
			missing = append(missing, k)
		case ok && !slices.Equal(have, want[k]):
			wrong = append(wrong, fmt.Sprintf("%s %v (want %v)", k, have, want[k]))
		}
	}
	for k := range shapes {
		if _, ok := want[k]; ok || !inResNetNamespace(k) {
			continue
		}
		unexpected = append(unexpected, k)
	}
	if len(missing)+len(wrong)+len(unexpected) == 0 {
		return nil
	}
	sort.Strings(unexpected)
	var parts []string
	add := func(what string, xs []string) {
		if len(xs) == 0 {
			return
		}
		more := ""
		if len(xs) > 5 {
			more = fmt.Sprintf(", … %d more", len(xs)-5)
			xs = xs[:5]
		}
		parts = append(parts, fmt.Sprintf("%s: %s%s", what, strings.Join(xs, ", "), more))
	}
	add("missing", missing)
	add("wrong shape", wrong)
	add("unexpected", unexpected)
	return fmt.Errorf("vision: the tensors look like %v but do not fit it; %s", c, strings.Join(parts, "; "))
}

// inResNetNamespace reports whether key k belongs to one of a ResNet's modules.
func inResNetNamespace(k string) bool {
	for _, p := range []string{"conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.", "fc."} {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

// describe words a configuration for people, e.g. "a ResNet-18 (width 0.25,
// CIFAR stem, 1 input channel) with a 10-class classifier".
func describe(c ResNetConfig) string {
	var details []string
	if c.Width != 0 && c.Width != 1 {
		details = append(details, "width "+strconv.FormatFloat(c.Width, 'g', -1, 64))
	}
	if strings.EqualFold(c.Stem, StemCIFAR) {
		details = append(details, "CIFAR stem")
	}
	switch c.InChannels {
	case 0, 3:
	case 1:
		details = append(details, "1 input channel")
	default:
		details = append(details, fmt.Sprintf("%d input channels", c.InChannels))
	}
	if c.StemPadding > 0 {
		details = append(details, fmt.Sprintf("stem padding %d", c.StemPadding))
	}
	s := fmt.Sprintf("a ResNet-%d", c.Depth)
	if c.WidthPerGroup != 0 && c.WidthPerGroup != 64 {
		s = fmt.Sprintf("a Wide ResNet-%d-%g", c.Depth, float64(c.WidthPerGroup)/64)
	}
	if len(details) > 0 {
		s += " (" + strings.Join(details, ", ") + ")"
	}
	if c.Classes > 0 {
		return s + fmt.Sprintf(" with a %d-class classifier", c.Classes)
	}
	return s + " backbone, no classifier"
}

// stateDictShapes returns the names, in torchvision's state_dict order, and
// shapes of every parameter and buffer of the ResNet c, by arithmetic (no
// tensors are made).
func stateDictShapes(cfg ResNetConfig) ([]string, map[string][]int64, error) {
	c, err := cfg.normalized()
	if err != nil {
		return nil, nil, err
	}
	var names []string
	shapes := map[string][]int64{}
	add := func(name string, shape ...int64) {
		names = append(names, name)
		shapes[name] = shape
	}
	conv := func(name string, out, in, k int64) { add(name+".weight", out, in, k, k) }
	bn := func(name string, ch int64) {
		add(name+".weight", ch)
		add(name+".bias", ch)
		add(name+".running_mean", ch)
		add(name+".running_var", ch)
		add(name + ".num_batches_tracked")
	}
	base := c.baseWidth()
	stemK, _, _ := c.stemGeometry()
	conv("conv1", base, int64(c.InChannels), stemK)
	bn("bn1", base)
	layout := resnetLayouts[c.Depth]
	in := base
	for i := 0; i < 4; i++ {
		planes := base << i
		for j := 0; j < layout.blocks[i]; j++ {
			p := fmt.Sprintf("layer%d.%d.", i+1, j)
			stride := int64(1)
			if i > 0 && j == 0 {
				stride = 2
			}
			out := planes * c.expansion()
			if layout.bottleneck {
				w := c.inner(planes)
				conv(p+"conv1", w, in, 1)
				bn(p+"bn1", w)
				conv(p+"conv2", w, w, 3)
				bn(p+"bn2", w)
				conv(p+"conv3", out, w, 1)
				bn(p+"bn3", out)
			} else {
				conv(p+"conv1", planes, in, 3)
				bn(p+"bn1", planes)
				conv(p+"conv2", planes, planes, 3)
				bn(p+"bn2", planes)
			}
			if stride != 1 || in != out {
				conv(p+"downsample.0", out, in, 1)
				bn(p+"downsample.1", out)
			}
			in = out
		}
	}
	if c.Classes > 0 {
		add("fc.weight", int64(c.Classes), in)
		add("fc.bias", int64(c.Classes))
	}
	return names, shapes, nil
}

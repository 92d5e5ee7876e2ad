package datasets

import (
	"fmt"
	"slices"
	"strings"
)

// Relabelling tasks: each maps every class of a data set to one of a few groups.
const (
	// TaskObjectsVsAnimals is CIFAR-10's two-class task of the paper (see
	// [Dataset.ObjectsVsAnimals]).
	TaskObjectsVsAnimals = "objects-vs-animals"
	// TaskClothingVsAccessories is Fashion-MNIST's two-class analogue: T-shirt/top,
	// Trouser, Pullover, Dress, Coat, Shirt → 0 "clothing"; Sandal, Sneaker, Bag,
	// Ankle boot → 1 "footwear+bags" (6 vs 4 classes, as objects vs animals is 4 vs 6).
	TaskClothingVsAccessories = "clothing-vs-accessories"
)

// task is a relabelling: the class names it applies to and the group of each.
type task struct {
	classes    []string // the data set's class names, in label order
	groupNames []string
	groupOf    []int // group of each class, in label order
}

var tasks = map[string]task{
	TaskObjectsVsAnimals: {classes: CIFAR10Classes, groupNames: []string{"object", "animal"},
		// airplane automobile bird cat deer dog frog horse ship truck
		groupOf: []int{0, 0, 1, 1, 1, 1, 1, 1, 0, 0}},
	TaskClothingVsAccessories: {classes: FashionMNISTClasses, groupNames: []string{"clothing", "footwear+bags"},
		// T-shirt/top Trouser Pullover Dress Coat Sandal Shirt Sneaker Bag Ankle-boot
		groupOf: []int{0, 0, 0, 0, 0, 1, 0, 1, 1, 1}},
}

// Tasks lists the relabelling tasks [Dataset.Relabel] knows, sorted.
func Tasks() []string {
	var out []string
	for k := range tasks {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Relabel maps d's labels to the groups of the named task (see [Tasks]); d must
// have the class names the task is defined on (a subset or folder export with
// the same names is fine). Noise information, if any, is mapped too. The result
// shares d's Pixels and its Name gets the suffix ":" + name.
func (d *Dataset) Relabel(name string) (*Dataset, error) {
	if err := d.checkShape(); err != nil {
		return nil, err
	}
	t, ok := tasks[name]
	if !ok {
		return nil, fmt.Errorf("unknown relabelling task %q (have: %s)", name, strings.Join(Tasks(), ", "))
	}
	// Map by name, so a folder export listing the classes in another order works too.
	mapping := make([]int, d.Classes)
	ok = d.Classes == len(t.classes) && len(d.ClassNames) == d.Classes
	for c := 0; ok && c < d.Classes; c++ {
		i := slices.Index(t.classes, d.ClassNames[c])
		ok = i >= 0
		if ok {
			mapping[c] = t.groupOf[i]
		}
	}
	if !ok {
		return nil, fmt.Errorf("%s: %s needs the classes [%s], not %d classes [%s]",
			d.Name, name, strings.Join(t.classes, ", "), d.Classes, strings.Join(d.ClassNames, ", "))
	}
	relabel := func(labels []int) ([]int, error) {
		out := make([]int, len(labels))
		for i, l := range labels {
			if l < 0 || l >= d.Classes {
				return nil, fmt.Errorf("%s: label %d of image %d out of range [0, %d)", d.Name, l, i, d.Classes)
			}
			out[i] = mapping[l]
		}
		return out, nil
	}
	out := d.cloneMeta()
	out.Name = d.Name + ":" + name
	out.Classes, out.ClassNames = len(t.groupNames), slices.Clone(t.groupNames)
	out.Pixels = d.Pixels
	var err error
	if out.Labels, err = relabel(d.Labels); err != nil {
		return nil, err
	}
	if d.Noise != nil {
		nz := &LabelNoise{P: d.Noise.P, Seed: d.Noise.Seed, Replaced: slices.Clone(d.Noise.Replaced)}
		if nz.Original, err = relabel(d.Noise.Original); err != nil {
			return nil, err
		}
		for _, i := range nz.Replaced {
			if i >= 0 && i < len(out.Labels) && out.Labels[i] != nz.Original[i] {
				nz.Changed++
			}
		}
		out.Noise = nz
	}
	return out, nil
}

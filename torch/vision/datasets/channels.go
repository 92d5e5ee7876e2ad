package datasets

import "fmt"

// WithChannels returns the data set with c channels: a 1-channel (grey) data
// set has its one channel repeated c times, as a 3-channel model trained on
// colour images expects; the normalisation is repeated likewise. A data set
// that already has c channels is returned as it is; any other change of
// channels is an error. The pixels are copied; d is not modified.
func (d *Dataset) WithChannels(c int) (*Dataset, error) {
	if c == d.C {
		return d, nil
	}
	if d.C != 1 || c < 1 {
		return nil, fmt.Errorf("datasets: %s has %d channels; only 1-channel (grey) images can be repeated to %d channels", d.Name, d.C, c)
	}
	out := *d
	out.C = c
	hw := d.H * d.W
	out.Pixels = make([]uint8, d.N*c*hw)
	for i := 0; i < d.N; i++ {
		src := d.Pixels[i*hw : (i+1)*hw]
		for j := 0; j < c; j++ {
			copy(out.Pixels[(i*c+j)*hw:], src)
		}
	}
	repeat := func(v []float64) []float64 {
		if len(v) != 1 {
			return v
		}
		r := make([]float64, c)
		for j := range r {
			r[j] = v[0]
		}
		return r
	}
	out.Mean, out.Std = repeat(d.Mean), repeat(d.Std)
	return &out, nil
}

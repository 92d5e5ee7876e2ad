package grid

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// figureSeries is one line of a figure: a pair's mean value per cut (over its
// stitching seeds) with the spread across seeds.
type figureSeries struct {
	label string
	x     []float64 // cut positions in the architecture
	mean  []float64
	sd    []float64 // 0 with one seed
}

// okabeIto is a colour-blind-friendly palette.
var okabeIto = []color.Color{
	color.RGBA{0, 114, 178, 255}, color.RGBA{213, 94, 0, 255}, color.RGBA{0, 158, 115, 255},
	color.RGBA{204, 121, 167, 255}, color.RGBA{230, 159, 0, 255}, color.RGBA{86, 180, 233, 255},
	color.RGBA{0, 0, 0, 255}, color.RGBA{240, 228, 66, 255},
}

var yLabels = map[string]string{
	"penalty":      "stitching penalty (pp)",
	"stitched_acc": "stitched accuracy (%)",
	"direct_acc":   "direct-match accuracy (%)",
	"cka":          "linear CKA",
	"cka_unbiased": "linear CKA (unbiased)",
	"top_acc":      "top accuracy (%)",
}

// drawFigure writes base+".png" and base+".svg": metric against cut, one line
// per series, error bars (±1 sd over stitching seeds) where there are several.
func drawFigure(base, title, metric string, cutNames []string, series []figureSeries) error {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = yLabels[metric]
	p.X.Label.Text = "cut point"
	lo, hi := math.Inf(1), math.Inf(-1)
	for i, s := range series {
		if len(s.x) == 0 {
			continue
		}
		xys := make(plotter.XYs, len(s.x))
		errs := make(plotter.YErrors, len(s.x))
		anySD := false
		for j := range s.x {
			xys[j] = plotter.XY{X: s.x[j], Y: s.mean[j]}
			errs[j] = struct{ Low, High float64 }{s.sd[j], s.sd[j]}
			anySD = anySD || s.sd[j] > 0
			lo, hi = math.Min(lo, s.mean[j]-s.sd[j]), math.Max(hi, s.mean[j]+s.sd[j])
		}
		line, points, err := plotter.NewLinePoints(xys)
		if err != nil {
			return err
		}
		c := okabeIto[i%len(okabeIto)]
		line.Color, points.Color = c, c
		points.Shape = draw.CircleGlyph{}
		if i >= len(okabeIto) {
			line.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
		}
		p.Add(line, points)
		p.Legend.Add(s.label, line, points)
		if anySD {
			eb, err := plotter.NewYErrorBars(struct {
				plotter.XYer
				plotter.YErrorer
			}{xys, errs})
			if err != nil {
				return err
			}
			eb.Color = c
			p.Add(eb)
		}
	}
	if math.IsInf(lo, 1) {
		return fmt.Errorf("figure %s: no points", base)
	}
	if metric == "penalty" {
		lo, hi = math.Min(lo, -1), math.Max(hi, 1)
		zero := plotter.NewFunction(func(float64) float64 { return 0 })
		zero.Dashes = []vg.Length{vg.Points(3), vg.Points(3)}
		p.Add(zero)
	}
	pad := 0.05 * (hi - lo)
	p.Y.Min, p.Y.Max = lo-pad, hi+pad
	p.X.Min, p.X.Max = -0.3, float64(len(cutNames)-1)+0.3
	p.Add(plotter.NewGrid())
	p.X.Tick.Marker = tickNames(cutNames)
	p.Legend.Top = true
	p.Legend.Left = false
	if err := os.MkdirAll(filepath.Dir(base), 0o755); err != nil {
		return err
	}
	const w, h = 8 * vg.Inch, 5 * vg.Inch
	sc := vgsvg.New(w, h)
	p.Draw(draw.New(sc))
	if err := writeFile(base+".svg", sc); err != nil {
		return err
	}
	ic := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(110))
	p.Draw(draw.New(ic))
	return writeFile(base+".png", vgimg.PngCanvas{Canvas: ic})
}

type tickNames []string

// Ticks labels integer positions with cut names.
func (t tickNames) Ticks(min, max float64) []plot.Tick {
	var out []plot.Tick
	for i, n := range t {
		if float64(i) >= min-0.5 && float64(i) <= max+0.5 {
			out = append(out, plot.Tick{Value: float64(i), Label: strings.TrimPrefix(n, "layer")})
		}
	}
	return out
}

// writeFile writes through a temporary file and a rename.
func writeFile(path string, wt io.WriterTo) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := wt.WriteTo(f); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

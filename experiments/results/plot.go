package results

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

// Series is one line on a penalty plot: rows of one bottom/top pair, in cut order.
type Series struct {
	Label string
	Rows  []Row
}

// PlotPenalty draws stitching penalty (top panel) and linear CKA (bottom
// panel) against cut point, one line per series, to a .png or .svg file.
func PlotPenalty(path, title string, series []Series) error {
	if len(series) == 0 || len(series[0].Rows) == 0 {
		return fmt.Errorf("plot: no results to draw")
	}
	cuts := series[0].Rows
	names := make([]string, len(cuts))
	for i, r := range cuts {
		names[i] = r.Cut
	}
	pen := plot.New()
	pen.Title.Text = title
	pen.Y.Label.Text = "stitching penalty (pp)"
	cka := plot.New()
	cka.Y.Label.Text = "linear CKA"
	cka.X.Label.Text = "cut point"
	cka.Y.Min, cka.Y.Max = 0, 1
	for i, s := range series {
		pp := make(plotter.XYs, len(s.Rows))
		var cp plotter.XYs
		for j, r := range s.Rows {
			pp[j] = plotter.XY{X: float64(j), Y: r.Penalty}
			if r.CKA != nil {
				cp = append(cp, plotter.XY{X: float64(j), Y: *r.CKA})
			}
		}
		for _, pair := range []struct {
			p   *plot.Plot
			xys plotter.XYs
		}{{pen, pp}, {cka, cp}} {
			if len(pair.xys) == 0 {
				continue
			}
			line, points, err := plotter.NewLinePoints(pair.xys)
			if err != nil {
				return err
			}
			line.Color = plotColor(i)
			points.Color = plotColor(i)
			points.Shape = draw.CircleGlyph{}
			pair.p.Add(line, points)
			if pair.p == pen && len(series) > 1 {
				pen.Legend.Add(s.Label, line, points)
			}
		}
	}
	// Keep the zero line (no penalty) in view, and the end points off the frame.
	pen.Y.Min, pen.Y.Max = math.Min(pen.Y.Min, -1), math.Max(pen.Y.Max, 1)
	for _, p := range []*plot.Plot{pen, cka} {
		p.X.Min, p.X.Max = -0.3, float64(len(names)-1)+0.3
	}
	zero := plotter.NewFunction(func(float64) float64 { return 0 })
	zero.Dashes = []vg.Length{vg.Points(3), vg.Points(3)}
	pen.Add(zero)
	pen.Add(plotter.NewGrid())
	cka.Add(plotter.NewGrid())
	ticks := cutTicks(names)
	pen.X.Tick.Marker = ticks
	cka.X.Tick.Marker = ticks
	pen.Legend.Top = true
	return saveStacked(path, pen, cka)
}

type cutTicks []string

// Ticks labels integer positions with cut names.
func (c cutTicks) Ticks(min, max float64) []plot.Tick {
	var t []plot.Tick
	for i, n := range c {
		if float64(i) >= min-0.5 && float64(i) <= max+0.5 {
			t = append(t, plot.Tick{Value: float64(i), Label: n})
		}
	}
	return t
}

// palette is a colour-blind-friendly set (Okabe–Ito).
var palette = []color.Color{
	color.RGBA{0, 114, 178, 255}, color.RGBA{213, 94, 0, 255}, color.RGBA{0, 158, 115, 255},
	color.RGBA{204, 121, 167, 255}, color.RGBA{230, 159, 0, 255}, color.RGBA{86, 180, 233, 255},
	color.RGBA{0, 0, 0, 255},
}

func plotColor(i int) color.Color { return palette[i%len(palette)] }

// CheckPlotPath checks, before any work, that a plot can be written at path:
// its name ends in .png or .svg (any case; no extension means PNG), and the
// file can be written there (see CheckWritable).
func CheckPlotPath(path string) error {
	if _, err := plotFormat(path); err != nil {
		return err
	}
	return CheckWritable(path)
}

// plotFormat is "svg" or "png" from path's extension.
func plotFormat(path string) (string, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".svg":
		return "svg", nil
	case ".png", "":
		return "png", nil
	}
	return "", fmt.Errorf("plot: %s: use a .png or .svg file name", path)
}

func saveStacked(path string, top, bottom *plot.Plot) error {
	const w, h = 9 * vg.Inch, 7 * vg.Inch
	format, err := plotFormat(path)
	if err != nil {
		return err
	}
	var c draw.Canvas
	var save func() error
	if format == "svg" {
		sc := vgsvg.New(w, h)
		c = draw.New(sc)
		save = func() error { return writeTo(path, sc) }
	} else {
		ic := vgimg.New(w, h)
		c = draw.New(ic)
		save = func() error { return writeTo(path, vgimg.PngCanvas{Canvas: ic}) }
	}
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadTop: vg.Points(4), PadBottom: vg.Points(4), PadX: vg.Points(4), PadY: vg.Points(8)}
	plots := [][]*plot.Plot{{top}, {bottom}}
	canvases := plot.Align(plots, tiles, c)
	top.Draw(canvases[0][0])
	bottom.Draw(canvases[1][0])
	return save()
}

// writeTo writes a plot to path, making the folders it needs.
func writeTo(path string, wt interface {
	WriteTo(w io.Writer) (int64, error)
}) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := wt.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"modelstitch/experiments/progress"
)

// newProgress returns the renderer of progress events on stderr: nil when
// quiet; on a terminal a bar per stage, redrawn as it goes; otherwise (a log,
// a pipe) nothing until a stage ends. Either way a finished stage leaves one
// plain line: what, how many, how long.
func newProgress(quiet bool) progress.Func {
	if quiet {
		return nil
	}
	r := &renderer{w: os.Stderr, live: term.IsTerminal(int(os.Stderr.Fd()))}
	return r.event
}

// renderer draws progress events on w.
type renderer struct {
	w     io.Writer
	live  bool // draw bars (w is a terminal)
	stage string
	bar   *progressbar.ProgressBar
}

func (r *renderer) event(e progress.Event) {
	if e.Note != "" {
		r.clear()
		fmt.Fprintln(r.w, e.Note)
		return
	}
	if r.live && !e.End {
		if r.bar == nil || r.stage != e.Stage {
			r.clear()
			r.stage = e.Stage
			r.bar = progressbar.NewOptions(max(e.Total, 1), progressbar.OptionSetWriter(r.w),
				progressbar.OptionSetDescription(e.Stage), progressbar.OptionShowCount(), progressbar.OptionShowIts(),
				progressbar.OptionSetItsString(e.Unit), progressbar.OptionThrottle(200*time.Millisecond),
				progressbar.OptionSetWidth(25))
		}
		if e.Detail != "" {
			r.bar.Describe(e.Stage + " " + e.Detail)
		}
		_ = r.bar.Set(e.Done)
		return
	}
	if e.End {
		r.clear()
		fmt.Fprintln(r.w, stageLine(e))
	}
}

// clear removes a live bar from the screen.
func (r *renderer) clear() {
	if r.bar != nil {
		_ = r.bar.Clear()
		r.bar, r.stage = nil, ""
	}
}

// stageLine is a finished stage's one line: "epoch 1/5: 31 batches in 12s
// (loss 0.412 acc 85.1%)".
func stageLine(e progress.Event) string {
	s := fmt.Sprintf("%s: %d %s in %s", e.Stage, e.Done, e.Unit, e.Elapsed.Round(time.Second/10))
	if e.Detail != "" {
		s += " (" + e.Detail + ")"
	}
	return s
}

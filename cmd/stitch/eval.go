package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"modelstitch/experiments/evaluate"
	"modelstitch/experiments/models"
	"modelstitch/experiments/splits"
)

// evalCommand is `stitch eval`.
func evalCommand() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "checkpoint", Required: true, Usage: "model file (ours, torch.save, TorchScript or safetensors)"},
		&cli.StringFlag{Name: "stem", Usage: "override the inferred stem (cifar or imagenet)"},
		keyFlag("key", "the checkpoint"), stemPaddingFlag("stem-padding"),
		&cli.IntFlag{Name: "channels", Usage: "repeat 1-channel (grey) images to this many channels for the model (e.g. 3 for an RGB model on Fashion-MNIST)"},
		&cli.IntFlag{Name: "batch-size", Value: 256},
		&cli.BoolFlag{Name: "json", Usage: "print one JSON object on stdout"},
		&cli.BoolFlag{Name: "quiet", Usage: "no progress bar"},
		deviceFlag(), threadsFlag(),
	}
	return &cli.Command{
		Name:   "eval",
		Usage:  "report a checkpoint's test accuracy",
		Flags:  append(flags, dataFlags("")...),
		Action: namingFlags(evalAction, checkpointFlagOf),
	}
}

func evalAction(c *cli.Context) error {
	dev, err := setup(c)
	if err != nil {
		return err
	}
	if b := c.Int("batch-size"); b < 1 {
		return fmt.Errorf("--batch-size must be at least 1, got %d", b)
	}
	m, err := models.Load(c.String("checkpoint"), models.LoadOptions{Stem: c.String("stem"), StemPadding: c.Int("stem-padding"), Key: c.String("key"), Device: dev})
	if err != nil {
		return err
	}
	defer m.Free()
	warnAbout(m)
	if !m.Net.HasClassifier() {
		return fmt.Errorf("%s is %s: it has no classifier to evaluate; fit one with `stitch probe --backbone %s`", m.Path, m.Description, m.Path)
	}
	name := c.String("data")
	if name == "" {
		name = m.Meta.Dataset
	}
	if name == "" {
		return fmt.Errorf("%s does not say which data set it was trained on: pass --data", m.Path)
	}
	_, test, err := splits.Load(splits.Config{Name: name, Dir: c.String("data-dir"), ImageSize: c.Int("image-size")})
	if err != nil {
		return err
	}
	if n := c.Int("channels"); n > 0 {
		if test, err = test.WithChannels(n); err != nil {
			return fmt.Errorf("--channels: %w", err)
		}
	}
	if want := m.Net.Config.InChannels; test.C != want {
		hint := ""
		if test.C == 1 {
			hint = fmt.Sprintf("; pass --channels %d to repeat the grey channel", want)
		}
		return fmt.Errorf("%s takes %d-channel images but %s has %d channels%s", m.Path, want, name, test.C, hint)
	}
	if test.Classes != m.Meta.Classes {
		return fmt.Errorf("%s has %d classes but %s has %d", m.Path, m.Meta.Classes, name, test.Classes)
	}
	mean, std := m.Meta.Mean, m.Meta.Std
	if len(mean) != test.C {
		mean, std = test.Mean, test.Std
	}
	acc, err := evaluate.TestAccuracy(m.Net, test, mean, std, c.Int("batch-size"), dev, newProgress(c.Bool("quiet") || c.Bool("json")))
	if err != nil {
		return err
	}
	if c.Bool("json") {
		js := map[string]any{"checkpoint": m.Path, "data": name, "accuracy": acc, "samples": test.N}
		if len(m.Warnings) > 0 {
			js["warnings"] = m.Warnings
		}
		return json.NewEncoder(os.Stdout).Encode(js)
	}
	fmt.Printf("%s on %s: test accuracy %.2f%% (%d images)\n", m.Path, name, acc, test.N)
	return nil
}

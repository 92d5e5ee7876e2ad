// Command stitch compares neural networks' representations by model stitching:
// the bottom of one trained network feeds the top of another through a small
// trainable layer, and the stitched network's accuracy says how compatible the
// two representations are (Bansal, Nakkiran & Barak, 2021).
//
//	stitch --bottom simclr.pt --top sup.pt          stitch at every cut point
//	stitch train --arch resnet18 --data fashion-mnist --out sup.pt
//	stitch eval --checkpoint sup.pt --json
//	stitch inspect sup.pt
//
// With no arguments it stitches the shipped default models on Fashion-MNIST.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"
)

// subcommands is filled by the init functions of the files beside this one.
var subcommands []*cli.Command

func main() {
	app := &cli.App{
		Name:            "stitch",
		Usage:           "compare neural network representations by model stitching",
		Flags:           stitchFlags(),
		Action:          stitchAction,
		Commands:        subcommands,
		HideHelpCommand: true,
	}
	if err := app.Run(os.Args); err != nil {
		var ec cli.ExitCoder
		if errors.As(err, &ec) {
			fmt.Fprintln(os.Stderr, "stitch:", err)
			os.Exit(ec.ExitCode())
		}
		fmt.Fprintln(os.Stderr, "stitch:", err)
		os.Exit(1)
	}
}

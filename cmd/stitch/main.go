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

	"modelstitch/experiments/models"
	"modelstitch/torch"
	"modelstitch/weights"
)

// subcommands returns the subcommands in the order --help lists them.
func subcommands() []*cli.Command {
	return []*cli.Command{trainCommand(), probeCommand(), evalCommand(), inspectCommand(), gridCommand()}
}

func main() {
	// A TorchScript archive is loaded in a child process: this same binary.
	if child, status, err := models.TorchScriptChild(); child {
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
		os.Exit(status)
	}
	os.Exit(mainExit(os.Args))
}

// mainExit is the program: it runs args and returns the exit status, after
// printing an error, if any, on stderr. Tests run it in a child process.
func mainExit(args []string) int {
	// Training steps reuse freed activations instead of faulting them in
	// again; MODELSTITCH_MALLOC=system keeps glibc's own settings.
	if _, err := torch.TuneHeapForTraining(); err != nil {
		fmt.Fprintln(os.Stderr, "stitch: warning:", err)
	}
	if err := run(args); err != nil {
		// Errors can quote a file's contents: no raw control characters reach the terminal.
		fmt.Fprintln(os.Stderr, "stitch:", weights.SanitizeMessage(err.Error(), 0))
		var ec cli.ExitCoder
		if errors.As(err, &ec) {
			return ec.ExitCode()
		}
		return 1
	}
	return 0
}

// run runs the command line args (args[0] is the program name).
func run(args []string) error {
	app := &cli.App{
		Name:            "stitch",
		Usage:           "compare neural network representations by model stitching",
		Flags:           stitchFlags(),
		Action:          namingFlags(stitchAction, stitchFlagOf),
		Commands:        subcommands(),
		HideHelpCommand: true,
	}
	return app.Run(args)
}

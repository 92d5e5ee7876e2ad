package main

import (
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"

	"github.com/urfave/cli/v2"

	"modelstitch/experiments/budget"
	"modelstitch/experiments/models"
	"modelstitch/torch"
	"modelstitch/weights"
)

// deviceFlag is --device, shared by every subcommand.
func deviceFlag() cli.Flag {
	return &cli.StringFlag{Name: "device", Value: "cpu", Usage: "cpu, cuda or cuda:N"}
}

// threadsFlag is --threads, the libtorch intra-op thread count.
func threadsFlag() cli.Flag {
	return &cli.IntFlag{Name: "threads", Value: runtime.NumCPU(), Usage: fmt.Sprintf("libtorch threads per operation (1 to %d)", budget.MaxThreads())}
}

// dataFlags are the data-set flags shared by training, evaluation and stitching.
func dataFlags(def string) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "data", Value: def, Usage: "fashion-mnist, mnist, cifar10, cifar100 or folder:PATH"},
		&cli.StringFlag{Name: "data-dir", Usage: "where the data set's files are (default: the packaged location)"},
		imageSizeFlag(),
	}
}

// setup applies --threads and parses and checks --device, and makes an
// interrupt say what it leaves behind.
func setup(c *cli.Context) (torch.Device, error) {
	name := ""
	if c.Command != nil {
		name = c.Command.Name
	}
	sayOnInterrupt.Do(func() { reportInterrupt(name) })
	// Checked before anything starts a thread: --threads 100000 never returned.
	n := c.Int("threads")
	if err := budget.CheckThreads(n); err != nil {
		return torch.CPU, fmt.Errorf("--threads %w", err)
	}
	if err := torch.SetNumThreads(n); err != nil {
		return torch.CPU, fmt.Errorf("--threads: %w", err)
	}
	dev, err := torch.ParseDevice(c.String("device"))
	if err != nil {
		return dev, fmt.Errorf("--device: %w", err)
	}
	if err := torch.CheckDevice(dev); err != nil {
		return dev, fmt.Errorf("--device %s: %w (--device cpu runs on the CPU)", dev, err)
	}
	return dev, nil
}

// keyFlag is --key (or --bottom-key, --top-key): a sub-network or prefix of a
// checkpoint, overriding the automatic choice among several networks.
func keyFlag(name, what string) cli.Flag {
	return &cli.StringFlag{Name: name, Usage: "pick the network in " + what + " by wrapper entry or key prefix " +
		"(e.g. module.encoder_k, target_network_state_dict); default: the online/query/base/teacher network"}
}

// stemPaddingFlag is --stem-padding (or a prefixed variant).
func stemPaddingFlag(name string) cli.Flag {
	return &cli.IntFlag{Name: name, Usage: "override the stem convolution's padding (0: what the file tells, else the usual (k-1)/2; solo-learn's CIFAR stem pads by 2)"}
}

// imageSizeFlag is --image-size for folder: data.
func imageSizeFlag() cli.Flag {
	return &cli.IntFlag{Name: "image-size", Usage: "side of the square images made from folder: data (0: 64)"}
}

// warnAbout prints a loaded model's warnings (NaN weights) on stderr: what
// is measured with such a model is not a result.
func warnAbout(m *models.Model) {
	for _, w := range m.Warnings {
		fmt.Fprintf(os.Stderr, "stitch: warning: %s: %s\n", weights.SanitizeMessage(m.Path, 300), w)
	}
}

var sayOnInterrupt sync.Once

// reportInterrupt makes SIGINT and SIGTERM end the program with status 130
// (SIGINT) or 143 (SIGTERM), saying so and what stays: every file is written
// atomically, so what was finished (checkpoints of finished epochs, rows of
// finished cuts) is complete, and the same command resumes. Without it an
// interrupt ended the program without a word.
func reportInterrupt(command string) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() { sayAndExit(<-sig, command) }()
}

// sayAndExit is reportInterrupt's end of the program on signal s.
func sayAndExit(s os.Signal, command string) {
	what := "finished work (checkpoints of finished epochs, rows of finished cuts) is kept; the same command resumes from it"
	if command == "eval" || command == "inspect" || command == "probe" {
		what = "nothing was written"
	}
	fmt.Fprintf(os.Stderr, "\nstitch: interrupted (%v): %s\n", s, what)
	if s == syscall.SIGTERM {
		os.Exit(143)
	}
	os.Exit(130)
}

package main

import (
	"fmt"
	"runtime"

	"github.com/urfave/cli/v2"

	"modelstitch/torch"
)

// deviceFlag is --device, shared by every subcommand.
func deviceFlag() cli.Flag {
	return &cli.StringFlag{Name: "device", Value: "cpu", Usage: "cpu, cuda or cuda:N"}
}

// threadsFlag is --threads, the libtorch intra-op thread count.
func threadsFlag() cli.Flag {
	return &cli.IntFlag{Name: "threads", Value: runtime.NumCPU(), Usage: "libtorch threads per operation"}
}

// dataFlags are the data-set flags shared by training, evaluation and stitching.
func dataFlags(def string) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "data", Value: def, Usage: "fashion-mnist, mnist, cifar10, cifar100 or folder:PATH"},
		&cli.StringFlag{Name: "data-dir", Usage: "where the data set's files are (default: the packaged location)"},
		imageSizeFlag(),
	}
}

// setup applies --threads and parses and checks --device.
func setup(c *cli.Context) (torch.Device, error) {
	if n := c.Int("threads"); n > 0 {
		if err := torch.SetNumThreads(n); err != nil {
			return torch.CPU, fmt.Errorf("--threads: %w", err)
		}
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

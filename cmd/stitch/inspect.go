package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"

	"modelstitch/experiments/models"
	"modelstitch/torch/nn"
	"modelstitch/weights"
)

// inspectCommand is `stitch inspect`.
func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "describe what a checkpoint file holds",
		ArgsUsage: "FILE",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print one JSON object on stdout"},
			keyFlag("key", "the file")},
		Action: namingFlags(inspectAction, checkpointFlagOf),
	}
}

// inspectReport is what `stitch inspect --json` prints.
type inspectReport struct {
	File        string            `json:"file"`
	Format      string            `json:"format"`
	Description string            `json:"description"`
	Arch        string            `json:"arch,omitempty"`
	Parameters  int64             `json:"parameters"`
	Tensors     int               `json:"tensors"`
	Groups      map[string]int    `json:"key_groups"`
	Notes       []string          `json:"notes,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	Meta        *models.Meta      `json:"modelstitch,omitempty"`
	LoadError   string            `json:"load_error,omitempty"`
}

func inspectAction(c *cli.Context) error {
	if c.Args().Len() != 1 {
		return errors.New("usage: stitch inspect FILE")
	}
	path := c.Args().First()
	rep := inspectReport{File: path, Groups: map[string]int{}}
	ck, err := models.OpenResNet(path, c.String("key"))
	if err != nil {
		return err
	}
	rep.Format = ck.Format
	rep.Tensors = ck.State.Len()
	rep.Notes = ck.Notes
	for _, k := range ck.State.Keys {
		rep.Groups[strings.SplitN(k, ".", 2)[0]]++
	}
	rep.Metadata = map[string]string{}
	for k, v := range ck.Metadata {
		if k != weights.MetadataKey {
			rep.Metadata[k] = v
		}
	}
	if m, err := models.Load(path, models.LoadOptions{Key: c.String("key")}); err == nil {
		rep.Description = m.Description
		rep.Arch = m.Net.Config.String()
		rep.Parameters = nn.NumParameters(m.Net)
		rep.Notes = m.Notes
		for _, w := range m.Warnings {
			rep.Notes = append(rep.Notes, "warning: "+w)
		}
		if m.HasMeta {
			meta := m.Meta
			rep.Meta = &meta
		}
		if rep.Tensors == 0 {
			rep.Tensors = len(nn.StateDict(m.Net))
		}
		m.Free()
	} else {
		rep.LoadError = err.Error()
	}
	// A file that cannot be loaded as a model is a failure (exit status 1),
	// after the report of what it holds.
	var loadErr error
	if rep.LoadError != "" {
		loadErr = fmt.Errorf("%s cannot be loaded as a model", path)
	}
	if c.Bool("json") {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
		return loadErr
	}
	// Names, notes and metadata come from the file: printed without raw control characters.
	clean := func(s string) string { return weights.SanitizeMessage(s, 300) }
	fmt.Printf("file:        %s\nformat:      %s\n", clean(rep.File), rep.Format)
	if rep.Description != "" {
		fmt.Printf("holds:       %s\narchitecture: %s\n", rep.Description, rep.Arch)
	}
	fmt.Printf("parameters:  %d\ntensors:     %d\n", rep.Parameters, rep.Tensors)
	if len(rep.Groups) > 0 {
		var keys []string
		for k := range rep.Groups {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s.* (%d)", clean(k), rep.Groups[k]))
		}
		fmt.Printf("keys:        %s\n", strings.Join(parts, ", "))
	}
	for _, n := range rep.Notes {
		fmt.Printf("note:        %s\n", clean(n))
	}
	if rep.Meta != nil {
		b, _ := json.MarshalIndent(rep.Meta, "             ", "  ")
		fmt.Printf("modelstitch: %s\n", clean(string(b)))
	}
	for k, v := range rep.Metadata {
		fmt.Printf("metadata:    %s = %s\n", clean(k), clean(v))
	}
	if rep.LoadError != "" {
		fmt.Printf("as a model:  cannot load: %s\n", clean(rep.LoadError))
	}
	return loadErr
}

package resnetkeys

import (
	"fmt"
	"strings"

	"modelstitch/weights"
)

// Resolve brings a checkpoint as weights.Open returns it (its state dict as
// stored) to torchvision's ResNet names in place: ResolveKeys with the
// checkpoint's KeyPrefix. What the keys told joins its metadata (the
// file's own values win), and what was done its notes; for solo-learn's
// layout, a note says whether the file's hyper-parameters agree with the
// stem the weights show.
func Resolve(ck *weights.Checkpoint) error {
	r, err := ResolveKeys(ck.State, ck.KeyPrefix)
	if err != nil {
		return err
	}
	ck.State = r.State
	ck.Notes = append(ck.Notes, r.Notes...)
	for k, v := range r.Meta {
		if _, ok := ck.Metadata[k]; !ok {
			ck.Metadata[k] = v
		}
	}
	if r.Meta[MetaFamily] == "solo-learn" {
		ck.Notes = append(ck.Notes, soloLearnStem(ck.Metadata, r.Meta[MetaStemPadding] != ""))
	}
	return nil
}

// soloLearnStem reads solo-learn's own hyper-parameters about its stem
// (cifar, or the data set's name) from a file's metadata and says whether
// they agree with the stem the weights show (3×3: CIFAR, built with
// padding 2).
func soloLearnStem(md map[string]string, cifarWeights bool) string {
	said, from := "", ""
	for _, k := range []string{"hyper_parameters.cifar", "hyper_parameters.cfg.data.dataset", "hyper_parameters.data.dataset", "hyper_parameters.dataset"} {
		if v, ok := md[k]; ok {
			said, from = strings.ToLower(v), k
			break
		}
	}
	if from == "" {
		return "solo-learn: no hyper-parameters about the stem in the file; the stem follows the weights"
	}
	cifarHP := said == "true" || strings.HasPrefix(said, "cifar")
	if cifarHP == cifarWeights {
		return fmt.Sprintf("solo-learn: the file's hyper-parameters agree with the stem (%s = %s)", from, said)
	}
	return fmt.Sprintf("solo-learn: the file's hyper-parameters (%s = %s) disagree with the stem the weights show; "+
		"the weights win: check the features, or set the stem and the stem padding", from, said)
}

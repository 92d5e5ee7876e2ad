package train

// SimCLRGrayscaleRecipe returns the SimCLR recipe that learns on small
// one-channel images such as Fashion-MNIST within a CPU budget, as measured in
// weights/defaults/README.md: SimCLRDefaults with batch 128, Adam at LR 3e-3
// (cosine decay to 0), NT-Xent at temperature 0.2, and views made by a random
// resized crop of 50–100 % of the image, a horizontal flip and
// brightness/contrast jitter 0.8 (p 0.8), without noise or erasing. The jitter
// matters most: without it two crops of an image share its grey levels, which
// is enough to match them, and the loss falls while the linear probe does not
// rise; 0.8 probed best among 0.4, 0.6, 0.8 and 1.0. Data, Epochs, Seed and
// Out are left to the caller.
func SimCLRGrayscaleRecipe() SimCLRConfig {
	cfg := SimCLRDefaults()
	cfg.BatchSize, cfg.LR, cfg.Temperature = 128, 3e-3, 0.2
	cfg.Views = &SimCLRViews{CropMin: 0.5, Flip: true, Jitter: 0.8, JitterP: 0.8}
	return cfg
}

// Package workflows holds no code: its test checks the repository's GitHub
// Actions workflows (.github/workflows: ci.yml for hosted CPU runners,
// cuda.yml for a self-hosted GPU runner) with actionlint, so that a broken
// workflow fails `make test` instead of the next push.
package workflows

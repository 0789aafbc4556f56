// Package docs holds pointsd's documentation and no code. Its tests keep
// the pages whole: every relative link in README.md and docs/*.md resolves,
// to a file and, with a #, to a heading there; and architecture.svg was
// rendered from the current architecture.dot (make diagram).
package docs

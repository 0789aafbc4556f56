// Package testhook carries hooks that only tests set into the packages they
// watch, as river's testSignals do: code outside this module cannot import
// it, so a hook is no part of any package's public API. It must not grow
// anything a production caller would need.
package testhook

// Hook is told of what a component does, as it happens, from the
// component's goroutines: its function must not block. A nil Hook tells
// nobody.
type Hook[E any] struct{ f func(E) }

// New returns a hook that calls f.
func New[E any](f func(E)) *Hook[E] { return &Hook[E]{f: f} }

// Emit tells the hook's function of e, if there is a hook.
func (h *Hook[E]) Emit(e E) {
	if h != nil && h.f != nil {
		h.f(e)
	}
}

// Package pointsd holds the service's domain types: the update Mode, the
// published Schedule, Cycle and State of a cycle, and the Answer a query
// reads. The packages that do the work import them: updater runs cycles,
// httpapi serves answers, pgsql stores both. As in benbjohnson/wtf, the
// domain sits at the module root and each adapter is named after what it
// depends on.
//
// It must not do any work of its own: no SQL, no HTTP, no clock. Its
// types carry db tags only so that pgsql scans rows straight into them.
package pointsd

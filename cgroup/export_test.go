package cgroup

// disableInotify removes the watcher's inotify watches for good: only the
// periodic rescan sees changes afterwards.
func (w *Watcher) disableInotify() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.noWatch = true
	w.aimWatches(nil)
}

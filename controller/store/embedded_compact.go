package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// CompactEmbedded rewrites the embedded store file at path without the
// room its deleted records left: bbolt reuses freed pages for new writes
// but never gives them back to the file system, so a file that once held
// more (before retention removed it) keeps its size. The copy is written
// next to the file, synced, and renamed over it; the file is locked
// throughout, so no controller may use it meanwhile. It returns the file's
// size before and after.
//
// # Errors
//
// ErrLocked when a controller holds the file; an error when the file is
// not a Wisp store; any I/O or bbolt error (the original file is then left
// as it was).
func CompactEmbedded(path string) (before, after int64, err error) {
	if _, err := os.Stat(path); err != nil { // bolt.Open would create it
		return 0, 0, fmt.Errorf("store: compact: %w", err)
	}
	src, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: embeddedLockTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return 0, 0, fmt.Errorf("store: compact %s: %w (stop the controller first)", path, ErrLocked)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("store: compact %s: %w", path, err)
	}
	defer src.Close()
	if err := src.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMeta) == nil || len(tx.Bucket(bucketMeta).Get(keyVersion)) != 8 {
			return errors.New("not a Wisp store (no meta/version)")
		}
		return nil
	}); err != nil {
		return 0, 0, fmt.Errorf("store: compact %s: %w", path, err)
	}
	if fi, err := os.Stat(path); err == nil {
		before = fi.Size()
	}
	tmp := path + ".compact"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, 0, fmt.Errorf("store: compact %s: %w", path, err)
	}
	dst, err := bolt.Open(tmp, 0o600, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("store: compact %s: %w", path, err)
	}
	// Commits of 64 MiB bound the memory the copy takes.
	err = bolt.Compact(dst, src, 64<<20)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = syncFile(tmp)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncFile(filepath.Dir(path))
	}
	if err != nil {
		os.Remove(tmp)
		return 0, 0, fmt.Errorf("store: compact %s: %w", path, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return 0, 0, fmt.Errorf("store: compact %s: %w", path, err)
	}
	return before, fi.Size(), nil
}

// syncFile fsyncs a file or a directory.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

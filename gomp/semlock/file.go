package semlock

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Named semaphores live in files of a private directory on tmpfs,
// /dev/shm/gomp-sem-UID/, one small file per semaphore named after the
// SemLock's name (leading slashes removed). A spawned or forkserver child
// re-attaches to a semaphore by opening and mapping that file, as POSIX named
// semaphores are re-opened by name.
//
// The directory keeps the names apart from every POSIX object: sem_open(3)
// and shm_open(3) names cannot contain a slash, so no POSIX semaphore
// (/dev/shm/sem.NAME) or shared memory segment (/dev/shm/NAME) can ever be
// one of these files. The directory must be a real directory (not a
// symlink) owned by the user, with no access for anyone else; otherwise
// another user could plant or read files in it, and every call refuses it.
//
// The files hold no data of their own beyond the semaphore words: the
// extension maps them MAP_SHARED and lays them out (pybind/ext/sync.c).

// BaseDir is the file system that holds the directory: /dev/shm (tmpfs), or
// the directory named by the environment variable GOMP_SHM_DIR (read when
// the core loads; children inherit it). Tests change it.
var BaseDir = baseDirFromEnv()

func baseDirFromEnv() string {
	if d := os.Getenv("GOMP_SHM_DIR"); d != "" {
		return d
	}
	return "/dev/shm"
}

// NameMax is the longest name accepted (NAME_MAX of the file system).
const NameMax = 255

var dirMu sync.Mutex

// Dir returns the directory for this user, creating it if needed.
func Dir() (string, error) {
	d := BaseDir + "/gomp-sem-" + strconv.Itoa(unix.Getuid())
	dirMu.Lock()
	defer dirMu.Unlock()
	for attempt := 0; ; attempt++ {
		err := checkDir(d)
		if err == nil {
			return d, nil
		}
		if err != unix.ENOENT || attempt > 0 {
			return "", err
		}
		if err := unix.Mkdir(d, 0o700); err != nil && err != unix.EEXIST {
			return "", fmt.Errorf("cannot create the semaphore directory %s: %w", d, err)
		} else if err == nil {
			// The umask may have taken bits away; the owner needs all three.
			unix.Chmod(d, 0o700)
		}
	}
}

// checkDir returns nil if d is a directory private to this user, ENOENT if
// it does not exist, and a descriptive error otherwise.
func checkDir(d string) error {
	var st unix.Stat_t
	if err := unix.Lstat(d, &st); err != nil {
		if err == unix.ENOENT {
			return err
		}
		return fmt.Errorf("cannot use the semaphore directory %s: %w", d, err)
	}
	uid := uint32(unix.Getuid())
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("refusing the semaphore directory %s: it is not a directory (a "+
			"symlink or a file is in its place); remove it", d)
	}
	if st.Uid != uid || st.Mode&0o077 != 0 {
		return fmt.Errorf("refusing the semaphore directory %s: it must be owned by uid %d with "+
			"mode 0700 (found owner %d, mode %04o); remove it or fix its permissions",
			d, uid, st.Uid, st.Mode&0o7777)
	}
	return nil
}

// fileName checks a SemLock name and returns its file name: the name without
// its leading slashes, which must then be a non-empty single path component.
func fileName(name string) (string, error) {
	n := strings.TrimLeft(name, "/")
	switch {
	case n == "" || n == "." || n == ".." || strings.ContainsAny(n, "/\x00"):
		return "", unix.EINVAL
	case len(n) > NameMax:
		return "", unix.ENAMETOOLONG
	}
	return n, nil
}

// Create makes the file of a new named semaphore with size bytes (zeros) and
// returns a descriptor open on it (close-on-exec). It fails with EEXIST if
// the name is taken.
func Create(name string, size int64) (int, error) {
	n, err := fileName(name)
	if err != nil {
		return -1, err
	}
	d, err := Dir()
	if err != nil {
		return -1, err
	}
	p := d + "/" + n
	fd, err := unix.Open(p, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return -1, err
	}
	if err := unix.Ftruncate(fd, size); err != nil {
		unix.Close(fd)
		unix.Unlink(p)
		return -1, err
	}
	return fd, nil
}

// Open returns a descriptor open on the file of the named semaphore, which
// must be a regular file of at least size bytes (EINVAL otherwise).
func Open(name string, size int64) (int, error) {
	n, err := fileName(name)
	if err != nil {
		return -1, err
	}
	d := BaseDir + "/gomp-sem-" + strconv.Itoa(unix.Getuid())
	if err := checkDir(d); err != nil {
		return -1, err
	}
	fd, err := unix.Open(d+"/"+n, unix.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size < size {
		unix.Close(fd)
		return -1, unix.EINVAL
	}
	return fd, nil
}

// Unlink removes the name of a named semaphore; processes that have it
// mapped keep using it.
func Unlink(name string) error {
	n, err := fileName(name)
	if err != nil {
		return err
	}
	d := BaseDir + "/gomp-sem-" + strconv.Itoa(unix.Getuid())
	if err := checkDir(d); err != nil {
		return err
	}
	return unix.Unlink(d + "/" + n)
}

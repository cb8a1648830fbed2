package queue

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/gomp-dev/gomp/gomp/owner"
)

// TestCLayoutMatches checks the ring layout that the extension's C path
// (pybind/ext/ring.h) declares against this package's constants: the two
// sides read and write the same words.
func TestCLayoutMatches(t *testing.T) {
	f, err := os.Open("../../pybind/ext/ring.h")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	defs := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 3 && fields[0] == "#define" {
			defs[fields[1]] = strings.TrimSuffix(fields[2], "u")
		}
	}
	want := map[string]uint64{
		"RING_MAGIC": magicValue, "RING_VERSION": layoutVer, "RING_HEADER": headerSize,
		"RING_MIN_CAPACITY": minCapacity, "RING_REC_HDR": recHdr,
		"RING_MAX_RECORD": maxRecord,
		"RING_OFF_MAGIC":  offMagic, "RING_OFF_VERSION": offVersion, "RING_OFF_CAPACITY": offCapacity,
		"RING_OFF_FLAGS": offFlags, "RING_OFF_TAIL": offTail, "RING_OFF_PLOCK": offPlock,
		"RING_OFF_PUT_COUNT": offPutCount, "RING_OFF_PJ_VALID": offPJValid, "RING_OFF_PJ_TAIL": offPJTail,
		"RING_OFF_PJ_PUT": offPJPut, "RING_OFF_HEAD": offHead, "RING_OFF_CLOCK": offClock,
		"RING_OFF_GET_COUNT": offGetCount, "RING_OFF_CJ_VALID": offCJValid, "RING_OFF_CJ_HEAD": offCJHead,
		"RING_OFF_CJ_GET": offCJGet, "RING_OFF_DATA_WAIT": offDataWait, "RING_OFF_SPACE_WAIT": offSpaceWait,
		"RING_OFF_SPACE_NEED": offSpaceNeed, "RING_OFF_CJ_CLAIM": offCJClaim, "RING_OFF_CJ_JOB": offCJJob,
		"RING_OFF_CJ_IDX": offCJIdx, "RING_OFF_DATA_SLOTS": offDataSlots, "RING_OFF_SPACE_SLOTS": offSpaceSlots,
		"RING_OFF_READY": offReady, "RING_OFF_WATCHERS": offWatchers, "RING_OFF_NLOCK": offNlock,
		"RING_OFF_CLAIMS": offClaims, "RING_CLAIM_SIZE": claimSize, "RING_WAIT_SLOTS": waitSlots,
		"RING_KIND_WHOLE": kindWhole, "RING_READY_SET": readySet, "RING_READY_ARMED": readyArmed,
		"RING_MAX_CAPACITY": maxCapacity, "RING_OFF_MAXSIZE": offMaxsize, "RING_OFF_ENTRY_HI": offEntryHi,
		"RING_OFF_ENTRIES": offEntries, "RING_ENTRY_SHIFT": entryShift, "RING_NO_OWNER": uint64(owner.NoOwner),
	}
	for name, v := range want {
		s, ok := defs[name]
		if !ok {
			t.Errorf("ring.h does not define %s", name)
			continue
		}
		got, err := strconv.ParseUint(s, 0, 64)
		if err != nil || got != v {
			t.Errorf("ring.h: %s is %s, gomp/queue has %d", name, s, v)
		}
	}
	// The owner tag sits 16 bytes after each lock word (tagOf).
	if s := defs["RING_TAG_AFTER"]; s != "16" {
		t.Errorf("ring.h: RING_TAG_AFTER is %s, lock.go's tagOf uses 16", s)
	}
}

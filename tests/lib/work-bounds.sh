# SPDX-License-Identifier: LGPL-2.1-or-later
# Shared by the per-request work-bound tests.
# cpu_limit_ticks: the daemon CPU (clock ticks) that a few maximal CACHE
# or BLOCK_STATUS requests may cost: 2 s, with room for a sanitizer's
# slowdown (unbounded work costs several seconds per request).
cpu_limit_ticks () {
  local hz libs
  hz=$(getconf CLK_TCK)
  libs=$(ldd "$top_builddir/server/luks-nbd")
  case ${LUKS_NBD_WRAPPER:-}$libs in
    *valgrind*|*libtsan*) echo $((hz * 20)) ;;
    *libasan*) echo $((hz * 4)) ;;
    *) echo $((hz * 2)) ;;
  esac
}

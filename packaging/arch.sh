#!/usr/bin/env bash
# Maps a Debian architecture name to what building for it takes.
# usage: arch.sh go|rpm|qemu|elf DEBARCH
#   go         Go's environment for it: GOARCH and the variant (GOARM,
#              GOMIPS, GO386...), as NAME=VALUE words for env(1)
#   rpm        rpm's name for it, empty when no .rpm is built for it
#   qemu       the qemu-user emulator that runs it (qemu-user-static)
#   elf        readelf -h's Machine and Class for it, "MACHINE|CLASS"
#
# The variants follow Debian's baselines (bookworm), low enough for the
# routers and boards these packages are for:
#   armhf    ARMv7 with VFPv3-D16: GOARM=7 (Go uses 16 double registers).
#   armel    ARMv5TE, no FPU required: GOARM=5 (software floating point).
#   mipsel   MIPS32r2; many router SoCs (24Kc, 74Kc, 1004Kc) have no FPU
#            and kernels may lack FPU emulation: GOMIPS=softfloat, which
#            runs on both.
#   mips64el MIPS64r2; GOMIPS64=softfloat for the same reason.
#   i386     i686 without SSE2 (Debian's i386 baseline): GO386=softfloat.
#   riscv64  RV64GC: Go's default GORISCV64=rva20u64.
# Everything is CGO_ENABLED=0: one static binary per architecture, no
# cross C toolchain.
set -euo pipefail
what=${1:?usage: arch.sh go|rpm|qemu|elf DEBARCH}
arch=${2:?usage: arch.sh go|rpm|qemu|elf DEBARCH}

case $arch in
amd64) go="GOARCH=amd64" rpm=x86_64 qemu=qemu-x86_64-static elf="Advanced Micro Devices X86-64|ELF64" ;;
arm64) go="GOARCH=arm64" rpm=aarch64 qemu=qemu-aarch64-static elf="AArch64|ELF64" ;;
armhf) go="GOARCH=arm GOARM=7" rpm=armv7hl qemu=qemu-arm-static elf="ARM|ELF32" ;;
armel) go="GOARCH=arm GOARM=5" rpm='' qemu=qemu-arm-static elf="ARM|ELF32" ;;
mips64el) go="GOARCH=mips64le GOMIPS64=softfloat" rpm='' qemu=qemu-mips64el-static elf="MIPS R3000|ELF64" ;;
mipsel) go="GOARCH=mipsle GOMIPS=softfloat" rpm='' qemu=qemu-mipsel-static elf="MIPS R3000|ELF32" ;;
riscv64) go="GOARCH=riscv64" rpm=riscv64 qemu=qemu-riscv64-static elf="RISC-V|ELF64" ;;
i386) go="GOARCH=386 GO386=softfloat" rpm='' qemu=qemu-i386-static elf="Intel 80386|ELF32" ;;
*)
	echo "arch.sh: unknown Debian architecture $arch (amd64 arm64 armhf armel mips64el mipsel riscv64 i386)" >&2
	exit 1
	;;
esac

case $what in
go) echo "$go" ;;
rpm) echo "$rpm" ;;
qemu) echo "$qemu" ;;
elf) echo "$elf" ;;
*)
	echo "arch.sh: unknown question $what" >&2
	exit 2
	;;
esac

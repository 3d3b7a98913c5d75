#!/usr/bin/env bash
# Installs the system packages the tests need (Debian/Ubuntu): an X server for the GUI's
# screenshot test (Xvfb) and Mesa's software Vulkan/GL drivers (lavapipe, llvmpipe) for wgpu.
# Building needs none of them: eframe loads X11, Vulkan and GL at run time.
# Idempotent; skips what is already there. Without root or apt, it says so and the GUI
# screenshot test skips.
set -euo pipefail
need=()
command -v Xvfb >/dev/null 2>&1 || need+=(xvfb)
[ -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] || ls /usr/share/vulkan/icd.d/lvp_icd.*.json >/dev/null 2>&1 || need+=(mesa-vulkan-drivers)
ldconfig -p 2>/dev/null | grep -q libvulkan.so.1 || need+=(libvulkan1)
ldconfig -p 2>/dev/null | grep -q libEGL_mesa.so.0 || need+=(libegl-mesa0)
ldconfig -p 2>/dev/null | grep -q 'libxkbcommon.so.0 ' || need+=(libxkbcommon0 libxkbcommon-x11-0)
[ -e /usr/lib/x86_64-linux-gnu/dri/swrast_dri.so ] || ls /usr/lib/*/dri/swrast_dri.so >/dev/null 2>&1 || need+=(libgl1-mesa-dri)
if [ ${#need[@]} -eq 0 ]; then
  echo "setup-system: all system packages present"
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-system: missing ${need[*]}; install them with your package manager (GUI screenshot test will skip)" >&2
  exit 0
fi
echo "setup-system: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "setup-system: done"

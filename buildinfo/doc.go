// Package buildinfo describes the running replds binary: module version,
// VCS revision and Go release, read once from the information the Go
// toolchain embeds (runtime/debug.ReadBuildInfo). The server reports it in
// Status and the replds_build_info metric, the CLI in --version. It is a
// leaf package: it imports nothing of replds.
package buildinfo

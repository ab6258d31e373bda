// Package settings is the one table of a server binary's settings: each
// entry is rendered as a command-line flag, an environment variable and a
// config-file key, all three derived from one snake_case name, so they
// cannot drift apart:
//
//	file key   data_dir
//	flag       --data-dir
//	env        WISP_DATA_DIR
//
// A Table fills a binary's own config struct (its entries point into it;
// the values there before Load are the defaults) from, each overriding the
// one before:
//
//	defaults < config file < environment < flags
//
// # Notes
//
//   - The environment is read with a lookup function (os.LookupEnv in the
//     binaries), so a variable set to the empty string counts: WISP_LOCAL_API=
//     turns the agent's local API off, as --local-api= does.
//   - The config file is YAML, one flat mapping of the file keys, the same
//     format for wisp-controller and wisp-agent. Lists are YAML sequences
//     or comma-separated strings. The agent's former format, KEY=value lines
//     with the environment's names, is still read, with a deprecation
//     warning.
//   - Each binary has its own variable naming its file (WISP_CONTROLLER_CONFIG,
//     WISP_AGENT_CONFIG); the former shared WISP_CONFIG is still read when
//     that one is unset, with a deprecation warning.
//   - One parser per kind of value (duration, size with a unit, integer,
//     boolean, list, choice), used by the three sources alike.
//
// Server, Group and Execute give the servers' cobra commands the habits
// of the wisp CLI: --version and a version command (internal/version.Line),
// one-line errors, exit code 2 for a wrong command line or setting, and
// single-dash long flags still read (DoubleDash).
//
// It must never import controller or agent packages: both servers use it
// and the agent binary must stay free of the controller's dependencies
// (internal/archtest).
package settings

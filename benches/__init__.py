"""The benchmarks, one package: each runs from the repository's root as a module,
`python3 -m benches.<bench>.run` (see benches/README.md). The shared harness (servers, proxies,
processes, free ports, tools) is `benches.pgbench`."""

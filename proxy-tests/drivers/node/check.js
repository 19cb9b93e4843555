// Runs the driver-matrix scenario with node-postgres: one line per step on stdout, exit status 1
// at the first unexpected result.
//
//   node check.js HOST PORT USER PASSWORD DBNAME [--restart]
//
// With --restart it runs the restart scenario instead: SET a custom parameter, prepare a named
// statement and execute it, print "ready", wait for one line on stdin, then execute the statement
// again and SHOW the parameter: "after: ok 42 node-postgres".
'use strict';

const readline = require('readline');
const { Client, DatabaseError } = require('pg');

class StepFailed extends Error {}

let step = 'connect';

function pass(detail) {
  console.log(detail === undefined ? `${step}: ok` : `${step}: ok ${detail}`);
}

function expect(got, want) {
  if (got !== want) {
    throw new StepFailed(`got ${got}, want ${want}`);
  }
  pass(got);
}

async function scenario(client) {
  await client.connect();
  pass();

  step = 'simple'; // A query without values goes over the simple query protocol.
  let res = await client.query('SELECT 40 + 2 AS n');
  expect(res.rows[0].n, 42);

  step = 'params';
  res = await client.query('SELECT $1::int4 + $2::int4 AS sum, $3::text AS word', [40, 2, 'hello']);
  expect(`${res.rows[0].sum} ${res.rows[0].word}`, '42 hello');

  step = 'prepared'; // A named query is parsed once per connection, then only bound and executed.
  const doubled = [];
  for (const i of [1, 2, 3]) {
    res = await client.query({ name: 'double', text: 'SELECT $1::int4 * 2 AS n', values: [i] });
    doubled.push(res.rows[0].n);
  }
  expect(doubled.join(' '), '2 4 6');

  step = 'create';
  const table = `driver_check_${process.pid}`;
  await client.query(`CREATE TABLE ${table} (id int4 PRIMARY KEY, note text NOT NULL)`);
  pass();

  // Inserts rows in one explicit transaction, then commits or rolls back.
  const insert = async (end, ids) => {
    await client.query('BEGIN');
    for (const id of ids) {
      await client.query(`INSERT INTO ${table} VALUES ($1, $2)`, [id, `row ${id}`]);
    }
    await client.query(end);
  };
  const count = async () => {
    const r = await client.query(`SELECT count(*) AS n FROM ${table}`);
    return Number(r.rows[0].n); // count(*) is int8, which pg returns as a string.
  };
  step = 'commit';
  await insert('COMMIT', [1, 2, 3]);
  expect(await count(), 3);
  step = 'rollback';
  await insert('ROLLBACK', [4, 5]);
  expect(await count(), 3);

  step = 'error';
  const err = await client.query('SELECT 1/0').then(() => null, (e) => e);
  if (!(err instanceof DatabaseError)) {
    throw new StepFailed(`want SQLSTATE 22012, got ${err}`);
  }
  expect(err.code, '22012');
  step = 'after-error';
  res = await client.query('SELECT 1 AS n');
  expect(res.rows[0].n, 1);

  step = 'rows';
  res = await client.query('SELECT g FROM generate_series(1, 10000) AS t(g)');
  const sum = res.rows.reduce((acc, row) => acc + row.g, 0);
  expect(`${res.rows.length} rows, sum ${sum}`, '10000 rows, sum 50005000');

  step = 'drop';
  await client.query(`DROP TABLE ${table}`);
  pass();
  step = 'close';
  await client.end();
  pass();
}

// Resolves with the next line on stdin, or null if stdin ends first.
function stdinLine() {
  return new Promise((resolve) => {
    const rl = readline.createInterface({ input: process.stdin });
    let line = null;
    rl.once('line', (l) => {
      line = l;
      rl.close();
    });
    rl.once('close', () => resolve(line));
  });
}

// Makes session state (a setting and a named prepared statement), waits for a line on stdin, then
// uses that state again.
async function restartScenario(client) {
  // An error the server sends while no query runs (a FATAL before it closes) comes as an event,
  // followed by one for the close; the first is kept so that the failing query can name it.
  let idleError = null;
  client.on('error', (e) => {
    idleError = idleError ?? e;
  });
  const double = { name: 'double', text: 'SELECT $1::int4 * 2 AS n', values: [21] };
  await client.connect();
  step = 'set';
  await client.query("SET app.who = 'node-postgres'");
  step = 'prepare';
  let res = await client.query(double);
  if (res.rows[0].n !== 42) {
    throw new StepFailed(`got ${res.rows[0].n}, want 42`);
  }
  console.log('ready');

  step = 'wait';
  if ((await stdinLine()) === null) {
    throw new StepFailed('stdin closed before a line came');
  }

  step = 'after';
  try {
    res = await client.query(double);
  } catch (e) {
    throw idleError === null ? e : idleError;
  }
  const n = res.rows[0].n;
  res = await client.query({ text: 'SHOW app.who', rowMode: 'array' });
  const who = res.rows[0][0];
  await client.end();
  console.log(`after: ok ${n} ${who}`);
}

async function main() {
  const args = process.argv.slice(2);
  const restart = args.length === 6 && args[5] === '--restart';
  if (args.length !== 5 && !restart) {
    console.error('usage: node check.js HOST PORT USER PASSWORD DBNAME [--restart]');
    process.exit(2);
  }
  const [host, port, user, password, database] = args;
  const client = new Client({
    host, port: Number(port), user, password, database, connectionTimeoutMillis: 10000,
  });
  try {
    await (restart ? restartScenario(client) : scenario(client));
  } catch (e) {
    const detail = e instanceof DatabaseError ? `SQLSTATE ${e.code}: ${e.message}` : e.message;
    console.log(`${step}: FAIL ${detail}`);
    if (restart) {
      console.error(`${step}: FAIL ${detail}`);
    }
    process.exit(1);
  }
}

main();

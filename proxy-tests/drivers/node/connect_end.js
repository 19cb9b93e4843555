// Calls connect() and end() at once, as an application that stops right after it starts does.
// node-postgres then writes Terminate before its StartupMessage. Prints "ended" when end()
// settles; an error left unhandled on the pending connect() makes node exit non-zero.
//
//   node connect_end.js HOST PORT USER PASSWORD DBNAME
'use strict';

const { Client } = require('pg');

const [host, port, user, password, database] = process.argv.slice(2);
const client = new Client({ host, port: Number(port), user, password, database });
client.connect();
client.end().then(() => console.log('ended'));

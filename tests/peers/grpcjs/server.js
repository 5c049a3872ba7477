'use strict';
// The kitchen test service on @grpc/grpc-js: a gRPC server that is not grpc C-core (its
// HTTP/2 is Node's nghttp2), for tests/e2e/test_lean_peers_e2e.py. It mirrors
// tests/kitchen_upstream.py for the unary methods, plus a few knobs of its own (below).
//
//   node server.js PROTO_ROOT [INCLUDE_DIR...]
//
// PROTO_ROOT holds edgetest/v1/kitchen.proto; the include dirs hold google/api, google/rpc
// and the well-known types. Listens on 127.0.0.1, port 0, and prints the bound port as the
// first line of stdout. Environment: PEER_MAX_STREAMS sets grpc.max_concurrent_streams;
// PEER_TLS_CERT and PEER_TLS_KEY serve over TLS.
//
// stdin: the server exits when it closes (so a dead test run never leaves it behind).
// A line "stop MS" calls tryShutdown (GOAWAY; calls in flight may finish) and, MS
// milliseconds later, forceShutdown (connections destroyed); it prints "stopped" once
// tryShutdown's callback has run. A line "stats" prints {"cancelled":N}, the number of
// Sleep calls seen cancelled (by the client, or by their deadline). SIGTERM exits at once.
//
// Knobs beyond kitchen_upstream.py, all keyed by request metadata:
//   Echo: every incoming "echo-*" key (each value, -bin ones too) is sent back both as
//         initial and as trailing metadata; "reply-bytes: N" replaces the reply with one
//         whose bytes_value is N bytes (i % 251), for large replies to small requests.

const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const [protoRoot, ...includes] = process.argv.slice(2);
if (!protoRoot) {
  process.stderr.write('usage: node server.js PROTO_ROOT [INCLUDE_DIR...]\n');
  process.exit(2);
}

const definition = protoLoader.loadSync('edgetest/v1/kitchen.proto', {
  includeDirs: [path.resolve(protoRoot), ...includes.map((dir) => path.resolve(dir))],
  keepCase: true, // field names as in the .proto (string_value), as grpc-python sees them
  longs: String,
  enums: String,
  bytes: Buffer,
  defaults: false,
  oneofs: true,
});
const kitchenPackage = grpc.loadPackageDefinition(definition).edgetest.v1;

// -- a google.rpc.Status with one google.rpc.BadRequest detail, encoded by hand ---------

function varint(value) {
  const out = [];
  let rest = value >>> 0;
  while (rest >= 0x80) {
    out.push((rest & 0x7f) | 0x80);
    rest >>>= 7;
  }
  out.push(rest);
  return Buffer.from(out);
}

function field(number, bytes) {
  // a length-delimited field (wire type 2)
  return Buffer.concat([varint((number << 3) | 2), varint(bytes.length), bytes]);
}

function statusDetails(code, message, badField) {
  const violation = Buffer.concat([
    field(1, Buffer.from(badField, 'utf8')), // FieldViolation.field
    field(2, Buffer.from('is bad', 'utf8')), // FieldViolation.description
  ]);
  const badRequest = field(1, violation); // BadRequest.field_violations
  const any = Buffer.concat([
    field(1, Buffer.from('type.googleapis.com/google.rpc.BadRequest', 'utf8')),
    field(2, badRequest),
  ]);
  const parts = [];
  if (code) parts.push(varint(1 << 3), varint(code)); // Status.code (wire type 0)
  if (message) parts.push(field(2, Buffer.from(message, 'utf8'))); // Status.message
  parts.push(field(3, any)); // Status.details
  return Buffer.concat(parts);
}

// -- the service ---------------------------------------------------------------------

const failCalls = new Map();
const stats = { cancelled: 0 };

function echoMetadata(incoming) {
  const out = new grpc.Metadata();
  let any = false;
  for (const [key, values] of Object.entries(incoming.toJSON())) {
    if (!key.startsWith('echo-')) continue;
    for (const value of values) {
      out.add(key, value);
      any = true;
    }
  }
  return any ? out : null;
}

const kitchen = {
  Echo(call, callback) {
    const echoed = echoMetadata(call.metadata);
    if (echoed) call.sendMetadata(echoed);
    let reply = call.request;
    const size = call.metadata.get('reply-bytes');
    if (size.length) {
      const bytes = Buffer.alloc(Number(size[0]));
      for (let i = 0; i < bytes.length; i += 1) bytes[i] = i % 251;
      reply = { bytes_value: bytes };
    }
    callback(null, reply, echoed ? echoed.clone() : undefined);
  },

  Plain(call, callback) {
    callback(null, call.request);
  },

  Inspect(call, callback) {
    const metadata = {};
    for (const [key, values] of Object.entries(call.metadata.toJSON())) {
      const value = values[values.length - 1]; // a dict keeps the last, as in Python
      metadata[key] = Buffer.isBuffer(value) ? 'bin:' + value.toString('hex') : String(value);
    }
    const deadline = call.getDeadline(); // a Date or epoch milliseconds; Infinity: none
    const at = deadline instanceof Date ? deadline.getTime() : Number(deadline);
    const remaining = (at - Date.now()) / 1000;
    callback(null, {
      metadata,
      deadline_seconds: Number.isFinite(remaining) ? remaining : 0,
      request: call.request,
    });
  },

  Fail(call, callback) {
    const request = call.request;
    const message = request.message || '';
    const calls = (failCalls.get(message) || 0) + 1;
    failCalls.set(message, calls);
    if (request.times && calls > request.times) {
      callback(null, {});
      return;
    }
    const headers = Object.entries(request.headers || {});
    if (headers.length) {
      const initial = new grpc.Metadata();
      for (const [key, value] of headers) initial.add(key, value);
      call.sendMetadata(initial);
    }
    const trailers = new grpc.Metadata();
    for (const [key, value] of Object.entries(request.trailers || {})) trailers.add(key, value);
    if (request.bad_field) {
      trailers.set(
        'grpc-status-details-bin',
        statusDetails(request.code || 0, message, request.bad_field),
      );
    }
    callback({ code: request.code || 0, details: message, metadata: trailers });
  },

  Sleep(call, callback) {
    const timer = setTimeout(() => callback(null, {}), (call.request.seconds || 0) * 1000);
    call.on('cancelled', () => {
      clearTimeout(timer);
      stats.cancelled += 1;
    });
  },
};

// -- serving -------------------------------------------------------------------------

const options = {
  'grpc.max_receive_message_length': 16 * 1024 * 1024,
  'grpc.max_send_message_length': 16 * 1024 * 1024,
};
if (process.env.PEER_MAX_STREAMS) {
  options['grpc.max_concurrent_streams'] = Number(process.env.PEER_MAX_STREAMS);
}
const server = new grpc.Server(options);
server.addService(kitchenPackage.KitchenService.service, kitchen);

// PEER_TLS_CERT and PEER_TLS_KEY (PEM files): serve h2 over TLS instead of h2c.
const fs = require('fs');
const credentials = process.env.PEER_TLS_CERT
  ? grpc.ServerCredentials.createSsl(null, [{
      cert_chain: fs.readFileSync(process.env.PEER_TLS_CERT),
      private_key: fs.readFileSync(process.env.PEER_TLS_KEY),
    }], false)
  : grpc.ServerCredentials.createInsecure();

server.bindAsync('127.0.0.1:0', credentials, (error, port) => {
  if (error) {
    process.stderr.write(`bind failed: ${error.message}\n`);
    process.exit(1);
  }
  process.stdout.write(`${port}\n`);
  process.stdin.resume(); // commands only after the port line
});

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  input += chunk;
  let newline;
  while ((newline = input.indexOf('\n')) >= 0) {
    const line = input.slice(0, newline).trim();
    input = input.slice(newline + 1);
    const [command, argument] = line.split(/\s+/);
    if (command === 'stop') {
      server.tryShutdown(() => process.stdout.write('stopped\n'));
      setTimeout(() => server.forceShutdown(), Number(argument || 0));
    } else if (command === 'stats') {
      process.stdout.write(`${JSON.stringify(stats)}\n`);
    }
  }
});
process.stdin.on('end', () => process.exit(0));
process.stdin.pause();
process.on('SIGTERM', () => process.exit(0));

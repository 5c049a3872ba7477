-- The transcoded POST: a unary GetBook whose request is the JSON body. It reads state and
-- never grows it, so the upstream costs the same on the first request as on the last.
wrk.method = "POST"
wrk.body = '{"name":"shelves/1/books/1"}'
wrk.headers["Content-Type"] = "application/json"

// Starts Swagger UI on the gateway's own document. Everything is served by the gateway
// (no CDN); validatorUrl: null keeps Swagger UI from loading its online validator badge.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    displayOperationId: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});

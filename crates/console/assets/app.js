"use strict";
// Placeholder page: lists the apps as text.
fetch("/api/apps" + location.search).then((r) => r.json()).then((apps) => {
  const view = document.getElementById("view");
  view.textContent = apps.map((a) => a.instance + " " + a.state + " " + a.health).join("\n");
});

// Served by wsgiserve as a static asset: proves the browser loaded it.
document.addEventListener("DOMContentLoaded", function () {
  var status = document.getElementById("script-status");
  status.textContent = "static script loaded";
  status.className = "loaded";
  // ?autosubmit=TEXT: fill in and submit the form (used by the headless browser test).
  var params = new URLSearchParams(window.location.search);
  var text = params.get("autosubmit");
  if (text !== null) {
    document.getElementById("text").value = text;
    document.getElementById("message-form").submit();
  }
});

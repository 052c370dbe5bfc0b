// Progressive enhancement only: every page works without this script.
/* global document, window, navigator, HTMLElement, HTMLButtonElement */
'use strict';

document.addEventListener('DOMContentLoaded', () => {
  // Move focus to an error summary, so screen readers announce it and the keyboard starts there.
  const summary = document.querySelector('[data-focus]');
  if (summary instanceof HTMLElement) summary.focus();

  // Copy buttons: <button data-copy="element-id">. Hidden until the script runs, since they need it.
  for (const button of document.querySelectorAll('button[data-copy]')) {
    if (!(button instanceof HTMLButtonElement)) continue;
    button.hidden = false;
    button.addEventListener('click', async () => {
      const source = document.getElementById(button.dataset.copy ?? '');
      const status = document.getElementById(`${button.dataset.copy ?? ''}-status`);
      if (!source) return;
      const text = source.textContent ?? '';
      try {
        await navigator.clipboard.writeText(text);
        if (status) status.textContent = 'Copied to the clipboard.';
      } catch {
        // No clipboard access (an insecure origin, or permission denied): select the text for a manual copy.
        const range = document.createRange();
        range.selectNodeContents(source);
        const selection = window.getSelection();
        selection?.removeAllRanges();
        selection?.addRange(range);
        if (status) status.textContent = 'Selected: press Ctrl+C (or ⌘C) to copy.';
      }
    });
  }
});

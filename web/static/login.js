// Sign in (with a TOTP code for a user who enrolled); then go where the
// user was headed (a path on this site only).
import { onSubmit } from './app.js';

const form = document.getElementById('login-form');

function next() {
  const target = new URLSearchParams(location.search).get('next') ?? '/';
  // Only a path of this site: "/x", never "//host" or "/\host" or a scheme.
  return /^\/(?![/\\])/.test(target) ? target : '/';
}

// A user who enrolled in TOTP is asked for a code after the password: the
// server says so as a problem with the field "code".
function askForCode() {
  const code = form.elements.code;
  document.getElementById('code-field').hidden = false;
  code.disabled = false;
  code.focus();
}

onSubmit(form, async ({ user, password, code }, send) => {
  try {
    await send('POST', '/api/login', code === undefined ? { user, password } : { user, password, code });
  } catch (e) {
    if (e.problems?.some((p) => p.field === 'code')) askForCode();
    throw e;
  }
  location.assign(next());
});

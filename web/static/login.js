// Sign in; then go where the user was headed (a path on this site only).
import { onSubmit } from './app.js';

const form = document.getElementById('login-form');

function next() {
  const target = new URLSearchParams(location.search).get('next') ?? '/';
  // Only a path of this site: "/x", never "//host" or "/\host" or a scheme.
  return /^\/(?![/\\])/.test(target) ? target : '/';
}

onSubmit(form, async ({ password }, send) => {
  await send('POST', '/api/login', { password });
  location.assign(next());
});

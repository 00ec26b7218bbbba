// An invite link (`/invite#<token>`, made on System > Users): shows what it
// offers or why it cannot be used, then makes the invitee's account, signs
// it in and offers two-step sign-in. The token is in the fragment, which
// browsers never send, so it reaches obsbox only in these requests' bodies.
import { api, onSubmit, when, clearMessage } from './app.js';

const $ = (id) => document.getElementById(id);
const token = decodeURIComponent(location.hash.slice(1));
const form = $('invite-form');

function showClosed(why) {
  $('invite-why').textContent = why;
  $('invite-closed').hidden = false;
  form.hidden = true;
}

async function check() {
  if (!token) {
    showClosed('The link has no invite in it: copy the whole link you were given.');
    return;
  }
  try {
    const offer = await api('POST', '/api/invite/check', { token });
    $('invite-offer').textContent = `You are invited as ${offer.role}. The link works once, until ${when(offer.expires_at)}.`;
    form.hidden = false;
    form.elements.name.focus();
  } catch (e) {
    showClosed(e.message);
  }
}

onSubmit(form, async ({ name, password, confirm }, send) => {
  let made;
  try {
    made = await send('POST', '/api/invite/accept', { token, name, password, confirm });
  } catch (e) {
    if (e.status === 410) showClosed(e.message);
    throw e;
  }
  // The link is used up: keep it out of the history.
  history.replaceState(null, '', '/invite');
  clearMessage();
  form.hidden = true;
  $('invite-user').textContent = made.user;
  $('invite-role').textContent = made.role;
  $('invite-totp-advice').textContent = made.role === 'admin'
    ? 'As an admin you should set it up now.'
    : 'You can set it up now or later under your account.';
  $('invite-done').hidden = false;
  $('invite-done').focus();
});

check();

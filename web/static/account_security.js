// The signed-in user's two-step sign-in (enrol with a QR code, confirm with
// a code, recovery codes shown once, turn off with the password) and API
// tokens (made with a role up to the user's, shown once, revocable).
import { api, table, when, action, say, onSubmit, options } from './app.js';

const $ = (id) => document.getElementById(id);
const ROLES = ['viewer', 'operator', 'admin'];
const tokenForm = $('api-token-form');

async function loadTotp() {
  const { enabled } = await api('GET', '/api/account/totp');
  $('totp-state').textContent = enabled
    ? 'On: signing in takes your password and a code from your authenticator app.'
    : 'Off: signing in takes your password only.';
  $('totp-start-row').hidden = enabled;
  $('totp-off-form').hidden = !enabled;
  if (enabled) $('totp-enrol').hidden = true;
}

$('totp-start').addEventListener('click', async () => {
  const enrolment = await api('POST', '/api/account/totp');
  $('totp-qr').src = `data:image/svg+xml,${encodeURIComponent(enrolment.qr_svg)}`;
  $('totp-secret').textContent = enrolment.secret;
  $('totp-recovery').hidden = true;
  $('totp-enrol').hidden = false;
  $('confirm-code').focus();
});

onSubmit($('totp-confirm-form'), async ({ code }, send) => {
  const { recovery_codes: codes } = await send('POST', '/api/account/totp/confirm', { code: code.replace(/\s/g, '') });
  $('totp-confirm-form').reset();
  $('recovery-codes').textContent = codes.join('\n');
  $('totp-recovery').hidden = false;
  say('Two-step sign-in is on.');
  await loadTotp();
});

onSubmit($('totp-off-form'), async ({ password }, send) => {
  await send('DELETE', '/api/account/totp', { password });
  $('totp-off-form').reset();
  say('Two-step sign-in is off.');
  await loadTotp();
});

async function loadTokens() {
  const tokens = await api('GET', '/api/account/tokens');
  table($('api-tokens'), {
    columns: [
      { label: 'Name', value: (t) => t.name },
      { label: 'Role', value: (t) => t.role },
      { label: 'Made', value: (t) => when(t.created_at) },
      { label: 'Expires', value: (t) => (t.expires_at ? when(t.expires_at) : 'never') },
      { label: 'Last used', value: (t) => (t.last_used_at ? when(t.last_used_at) : 'never') },
      { label: 'Actions', value: (t) => action('Revoke', `Revoke ${t.name}`, async () => {
        if (!window.confirm(`Revoke the token ${t.name}? Scripts using it stop working at once.`)) return;
        await api('DELETE', `/api/account/tokens/${t.id}`);
        say(`The token ${t.name} is revoked.`);
        await loadTokens();
      }, 'small danger') },
    ],
    rows: tokens,
    empty: 'No API tokens yet.',
  });
}

onSubmit(tokenForm, async (v, send) => {
  const made = await send('POST', '/api/account/tokens', { name: v.name, role: v.role, expires_days: v.expires_days });
  tokenForm.reset();
  $('api-token-value').value = made.token;
  $('new-api-token').hidden = false;
  say(`The token ${made.name} is made.`);
  await loadTokens();
});

const { role } = await api('GET', '/api/session');
options(tokenForm.elements.role, ROLES.slice(0, ROLES.indexOf(role) + 1));
await Promise.all([loadTotp(), loadTokens()]);

// Account: change the administrator's password.
import { onSubmit, say } from './app.js';

const form = document.getElementById('password-form');
onSubmit(form, async (v, send) => {
  await send('POST', '/api/account/password', { current: v.current, password: v.password, confirm: v.confirm });
  form.reset();
  say('Password changed.');
});

<?php
use App\Models\User;

function fullName(User $user): string {
    return <CURSOR>;
}
